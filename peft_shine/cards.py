"""Model cards (README.md with Hub metadata) for what peft-shine saves: a plain LoRA exported from an absorbed context,
and the section SHINE adds to the card PEFT writes for a hypernetwork adapter."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from huggingface_hub import ModelCard, ModelCardData

if TYPE_CHECKING:
    from .absorbed import AbsorbedContext
    from .config import ShineConfig

LORA_TAGS = ["peft", "lora", "shine", "peft-shine"]
HYPERNETWORK_TAGS = ["peft", "shine", "hypernetwork", "peft-shine"]
SHINE_SECTION = "## SHINE hypernetwork"


def lora_card(absorbed: AbsorbedContext, made: str | None = None, tags: list[str] = (), **metadata: Any) -> ModelCard:
    """The card of one exported LoRA (`absorbed` holds one context): metadata (library_name peft, base_model, tags,
    `metadata`), the adapter's settings, how it was made (`made`, default: `absorb_context` of an unnamed text) and
    how to load it."""
    base = absorbed.base_model_name_or_path
    data = ModelCardData(library_name="peft", base_model=base, tags=[*LORA_TAGS, *tags], **metadata)
    compressed = (
        f", compressed to rank {absorbed.rank} by a truncated SVD (relative error {absorbed.compression_error:.3g})"
        if absorbed.compression_error is not None
        else ""
    )
    made = made or (
        f"by a SHINE hypernetwork in one forward pass (peft-shine, `model.absorb_context(text)`) from a text of "
        f"{absorbed.context_token_counts[0]} tokens in {absorbed.num_chunks[0]} chunk(s){compressed}"
    )
    body = f"""
# LoRA written by a SHINE hypernetwork

A plain PEFT LoRA adapter (rank {absorbed.rank}, lora_alpha {absorbed.rank}, no dropout, no bias) for
{f"`{base}`" if base else "the base model it was absorbed with"}, written {made}. The text itself is not stored here.

```python
from peft import PeftModel
model = PeftModel.from_pretrained(base_model, "path/to/this/folder")   # then ask questions about the text
```

vLLM (`--enable-lora`, `LoRARequest`), TGI (`LORA_ADAPTERS`) and PEFT's `load_adapter` serve it like any PEFT LoRA.
"""
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{body}")


def add_hypernetwork_section(directory: str | os.PathLike, config: ShineConfig) -> None:
    """Add SHINE's tags, the base model and a section on how the adapter was made to the README.md that
    `PeftModel.save_pretrained` wrote into `directory` (nothing when there is none)."""
    path = os.path.join(directory, "README.md")
    if not os.path.isfile(path):
        return
    card = ModelCard.load(path)
    card.data.tags = sorted(set(card.data.tags or []) | set(HYPERNETWORK_TAGS))
    if config.base_model_name_or_path and not card.data.base_model:
        card.data.base_model = config.base_model_name_or_path
    if SHINE_SECTION not in card.text:
        card.text += (
            f"\n{SHINE_SECTION}\n\nA SHINE hypernetwork made with peft-shine (`get_peft_model(base, "
            "ShineConfig(...))`, trained with a stock `transformers.Trainer`): it reads a context with the frozen base "
            f"and writes a rank-{config.lora_rank} LoRA for {config.target_modules} in one forward pass. Load it with "
            "`PeftModel.from_pretrained(base, path)` after `import peft_shine`, then `model.absorb_context(text)` and "
            "`model.ask(question)`.\n"
        )
    card.save(path)


PAPER = "Liu et al., SHINE: Scalable Hyper In-context NEtwork (arXiv:2602.06358, ICML 2026)"


def reference_card(
    config: ShineConfig, source: str, revision: str | None, trainer_state: dict | None, license: str | None
) -> ModelCard:
    """The card of a SHINE adapter converted from the reference code's checkpoint `source` (`reference.py`)."""
    data = ModelCardData(
        library_name="peft", base_model=config.base_model_name_or_path, tags=sorted(HYPERNETWORK_TAGS), license=license
    )
    license_text = license or "not stated in the source; see the source checkpoint's repository"
    step = f", saved at training step {trainer_state['global_step']}" if "global_step" in (trainer_state or {}) else ""
    body = f"""
# SHINE hypernetwork converted from the paper's checkpoint

The SHINE hypernetwork of {PAPER}, converted with peft-shine (`peft-shine convert-reference`) from the reference
code's checkpoint `{source}`{f" (revision {revision})" if revision else ""}{step}. Reference code:
github.com/MuLabPKU/SHINE (Apache-2.0). License of the weights: {license_text}.

It reads a context with the frozen base `{config.base_model_name_or_path}` and writes a rank-{config.lora_rank} LoRA
for {config.target_modules} of every layer in one forward pass ({config.num_memory_tokens} memory slots, meta-LoRA
rank {config.meta_lora_rank}, {config.m2p_layers} M2P blocks, scale {config.lora_scale}; raw memory states and the
reference's position ids, so it computes what the reference code computes).

```python
import peft_shine  # registers the SHINE adapter type with PEFT
from peft import PeftModel
model = PeftModel.from_pretrained(base_model, "path/to/this/folder")
model.absorb_context(document)
model.ask("Who signed it?")
```
"""
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{body}")
