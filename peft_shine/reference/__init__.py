"""The SHINE paper's checkpoints as peft-shine adapters: read the reference code's format (MuLabPKU/SHINE,
`utils/mysaveload.py`), check it against a base model, and write a SHINE PEFT adapter folder.

A reference checkpoint is a folder with
    mem_tokens.pt                 the memory embeddings, an `nn.Parameter` (M, H)
    metanetwork.pth               the M2P state dict: layer_pe (L, H), token_pe (M, H), transformer_layers.{i}.*
                                  (`nn.TransformerEncoderLayer`, post-LN), optionally couple_layers.{i}.*
    metalora.pth                  {layer: {"attention": {"q", "k", "v", "o"}, "mlp": {"gate", "up", "down"}}}, each
                                  {"A": (1, in, r_meta), "B": (1, r_meta, out), "C": None}
    ift_additional_metalora.pth   optional: a second meta-LoRA of the same layout from instruction tuning, which the
                                  reference concatenates with the first along the rank
    trainer_state.json            optional: training progress (recorded in the model card)

Pickles are read with `torch.load(weights_only=True)` only: a file that needs anything beyond tensors and plain
containers is refused, never unpickled.
"""

from .checkpoint import CHECKPOINT_FILES, IFT_FILE, REFERENCE_MODULES, ReferenceCheckpoint, load_tensors
from .convert import adapter_state_dict, convert_reference, resolve_source
from .plan import plan_conversion

__all__ = [
    "CHECKPOINT_FILES",
    "IFT_FILE",
    "REFERENCE_MODULES",
    "ReferenceCheckpoint",
    "adapter_state_dict",
    "convert_reference",
    "load_tensors",
    "plan_conversion",
    "resolve_source",
]
