"""peft-shine: SHINE hypernetworks as a PEFT adapter type.

Importing this package registers the "SHINE" adapter type with PEFT, so `get_peft_model`, `PeftConfig.from_pretrained`,
`PeftModel.from_pretrained` and `AutoPeftModelForCausalLM.from_pretrained` handle SHINE adapters.
"""

from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_PREFIX_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING

from .absorbed import AbsorbedContext
from .config import SHINE_PEFT_TYPE, ShineConfig
from .defaults import load_default, load_shine
from .hypernetwork import ShineHypernetwork, SlicingPlan, context_variance_share
from .layer import ShineLinear
from .model import ShineModel
from .options import AbsorbOptions


def _register_with_peft() -> None:
    """Add SHINE to PEFT's type tables (PeftType is a str enum, so the plain string "SHINE" works as a key)."""
    PEFT_TYPE_TO_CONFIG_MAPPING[SHINE_PEFT_TYPE] = ShineConfig
    PEFT_TYPE_TO_TUNER_MAPPING[SHINE_PEFT_TYPE] = ShineModel
    PEFT_TYPE_TO_PREFIX_MAPPING[SHINE_PEFT_TYPE] = ShineModel.prefix


_register_with_peft()

_LAZY = {  # loaded on first use: `import peft_shine` loads the core only, not training or corpus code
    "ShineLoss": ("peft_shine.training.objective", "ShineLoss"),
    "absorb_corpus": ("peft_shine.corpus", "absorb_corpus"),
    "load_absorbed": ("peft_shine.corpus", "load_absorbed"),
}


def __getattr__(name: str):
    """`from peft_shine import ShineLoss` (and the corpus functions) without loading them at `import peft_shine`."""
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'peft_shine' has no attribute {name!r}")


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
__version__ = "0.2.0"
