"""peft-shine: SHINE hypernetworks as a PEFT adapter type.

Importing this package registers the "SHINE" adapter type with PEFT, so `get_peft_model`, `PeftConfig.from_pretrained`,
`PeftModel.from_pretrained` and `AutoPeftModelForCausalLM.from_pretrained` handle SHINE adapters.
"""

from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_PREFIX_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING

from .absorbed import AbsorbedContext
from .config import SHINE_PEFT_TYPE, ShineConfig
from .corpus import absorb_corpus, load_absorbed
from .defaults import load_default, load_shine
from .hypernetwork import ShineHypernetwork, SlicingPlan, context_variance_share
from .layer import ShineLinear
from .model import ShineModel
from .objective import ShineLoss
from .options import AbsorbOptions


def _register_with_peft() -> None:
    """Add SHINE to PEFT's type tables (PeftType is a str enum, so the plain string "SHINE" works as a key)."""
    PEFT_TYPE_TO_CONFIG_MAPPING[SHINE_PEFT_TYPE] = ShineConfig
    PEFT_TYPE_TO_TUNER_MAPPING[SHINE_PEFT_TYPE] = ShineModel
    PEFT_TYPE_TO_PREFIX_MAPPING[SHINE_PEFT_TYPE] = ShineModel.prefix


_register_with_peft()

__all__ = [
    "AbsorbOptions",
    "AbsorbedContext",
    "ShineConfig",
    "ShineHypernetwork",
    "ShineLinear",
    "ShineLoss",
    "ShineModel",
    "SlicingPlan",
    "absorb_corpus",
    "context_variance_share",
    "load_absorbed",
    "load_default",
    "load_shine",
]
__version__ = "0.1.0"
