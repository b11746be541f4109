"""Putting SHINE on a base model: the shipped hypernetwork of the default base, and the one way to load a SHINE
adapter (or make a new one) on any base (`shine_model`, `load_shine`, `load_default`). The default base itself (the
embedded SmolLM2 GGUF) is `default_base.py`; its public names are importable from here as well."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from peft import PeftModel, get_peft_model
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .config import ShineConfig
from .default_base import (  # noqa: F401  (re-exported: the documented home of the default base's names)
    DEFAULT_GGUF_FILE,
    DEFAULT_GGUF_PACKAGE,
    DEFAULT_HUB_ID,
    DEFAULT_MODEL_NAME,
    EMBEDDED_WEIGHTS,
    GGUF_ENV_VAR,
    INSTALL_COMMAND,
    DefaultModelNotInstalledError,
    default_cache_dir,
    default_gguf_path,
    embedded_model_dir,
    fetch_default_gguf,
    load_base,
    load_default_base,
    pretrained_source,
)

logger = logging.getLogger(__name__)

DEFAULT_ADAPTER_DIR = Path(__file__).parent / "assets" / "default"


def shine_model(
    base: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    adapter: str | os.PathLike | None = None,
    *,
    config: ShineConfig | None = None,
    is_trainable: bool = False,
) -> PeftModel:
    """The one way to put SHINE on a base model: the saved adapter (folder or Hub id) loaded with
    `PeftModel.from_pretrained`, else a new adapter from `config` with `get_peft_model`; the tuner keeps `tokenizer`.
    Eval mode unless `is_trainable`."""
    if adapter is not None:
        model = PeftModel.from_pretrained(base, adapter, is_trainable=is_trainable)
    elif config is not None:
        model = get_peft_model(base, config)
    else:
        raise ValueError("shine_model needs a saved adapter (adapter=) or a ShineConfig for a new one (config=).")
    model.base_model.resolve_tokenizer(tokenizer)
    return model.train(is_trainable)


def load_shine(
    base: str | None = None, adapter: str | os.PathLike | None = None
) -> tuple[PeftModel, PreTrainedTokenizerBase]:
    """A SHINE model for inference: `adapter` (default: the shipped hypernetwork) on the base `base` (a path or Hub
    id; default: the embedded SmolLM2), and its tokenizer."""
    if base is None and adapter is None:
        return load_default()
    model_base, tokenizer = load_base(base)
    return shine_model(model_base, tokenizer, adapter or DEFAULT_ADAPTER_DIR), tokenizer


def load_default(cache_dir: str | os.PathLike | None = None) -> tuple[PeftModel, PreTrainedTokenizerBase]:
    """The default base with the shipped SHINE hypernetwork, ready for `absorb_context(text)` and `ask(question)`.

    If the package was built without the trained checkpoint (`peft_shine/assets/default/`), a fresh, untrained
    hypernetwork of the same shape is returned and a warning says so.
    """
    base, tokenizer = load_default_base(cache_dir)
    if (DEFAULT_ADAPTER_DIR / "adapter_model.safetensors").is_file():
        return shine_model(base, tokenizer, DEFAULT_ADAPTER_DIR), tokenizer
    logger.warning("No trained default hypernetwork is installed; using an untrained one (answers are noise).")
    config = ShineConfig(target_modules=["down_proj"], lora_rank=4, meta_lora_rank=4, m2p_layers=2)
    return shine_model(base, tokenizer, config=config), tokenizer
