"""Model cards (README.md with Hub metadata) for what peft-shine saves: a plain LoRA exported from an absorbed context,
the card of a SHINE hypernetwork (completing the one PEFT writes), and the card of a converted reference checkpoint.

A leaf module: its functions take plain values (`LoraFacts`, `HypernetworkFacts`), so the modules that save things
import it and it imports none of them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import peft
from huggingface_hub import ModelCard, ModelCardData

LORA_TAGS = ["peft", "lora", "shine", "peft-shine"]
HYPERNETWORK_TAGS = ["peft", "shine", "hypernetwork", "peft-shine"]
SHINE_SECTION = "## SHINE hypernetwork"  # added to a card someone else wrote
SHINE_MARK = "# SHINE hypernetwork"  # in SHINE_SECTION and in the title of the card peft-shine writes
PEFT_TEMPLATE_TITLE = "# Model Card for Model ID"  # the untouched template PEFT writes when a folder has no card
BASE_WEIGHTS_ATTRIBUTE = "peft_shine_base_weights"
"""Attribute of a base model's config that says which weights it holds when its name does not (peft-shine's embedded
copy of the default base sets it, see `defaults.EMBEDDED_WEIGHTS`)."""


def base_weights_of(model: Any) -> str | None:
    """The `peft_shine_base_weights` note of a base model's config, or None."""
    return getattr(getattr(model, "config", None), BASE_WEIGHTS_ATTRIBUTE, None)


def _made_on(base: str | None, weights: str | None) -> str:
    """The sentence that names the base (and its exact weights when known), or nothing without a base."""
    if not base:
        return ""
    return f"Made on `{base}`" + (f": {weights}." if weights else ".")


def _shine_usage(base: str | None) -> str:
    """How to load a SHINE hypernetwork: `import peft_shine` first (it registers the adapter type with PEFT)."""
    return f"""```python
import peft_shine  # registers the SHINE adapter type with PEFT; without it loading fails with KeyError: 'SHINE'
from peft import PeftModel
from transformers import AutoModelForCausalLM

base = AutoModelForCausalLM.from_pretrained("{base or "<base model>"}")
model = PeftModel.from_pretrained(base, "<this folder or Hub repo>")
model.absorb_context(open("report.txt").read())   # one forward pass writes a LoRA for the text
print(model.ask("Who signed the report?"))
```
"""


@dataclass(frozen=True)
class LoraFacts:
    """What the card of one exported LoRA says about it."""

    rank: int
    base: str | None  # base_model_name_or_path
    base_weights: str | None  # which weights of that base, when its name alone does not say
    context_tokens: int
    num_chunks: int
    compression_error: float | None  # relative error of the SVD to the rank budget; None: not compressed


def compression_note(rank: int, error: float | None) -> str:
    """ ", compressed to rank r by a truncated SVD (relative error e)" for a compressed adapter, else ""."""
    return "" if error is None else f", compressed to rank {rank} by a truncated SVD (relative error {error:.3g})"


def lora_card(facts: LoraFacts, made: str | None = None, tags: list[str] = (), **metadata: Any) -> ModelCard:
    """The card of one exported LoRA: metadata (library_name peft, base_model, tags, `metadata`), the adapter's
    settings, how it was made (`made`, default: `absorb_context` of an unnamed text), on which weights and how to
    load it."""
    base = facts.base
    data = ModelCardData(library_name="peft", base_model=base, tags=[*LORA_TAGS, *tags], **metadata)
    made = made or (
        f"by a SHINE hypernetwork in one forward pass (peft-shine, `model.absorb_context(text)`) from a text of "
        f"{facts.context_tokens} tokens in {facts.num_chunks} chunk(s)"
        + compression_note(facts.rank, facts.compression_error)
    )
    body = f"""
# LoRA written by a SHINE hypernetwork

A plain PEFT LoRA adapter (rank {facts.rank}, lora_alpha {facts.rank}, no dropout, no bias) for
{f"`{base}`" if base else "the base model it was absorbed with"}, written {made}. The text itself is not stored here.

{_made_on(base, facts.base_weights)}

```python
from peft import PeftModel
from transformers import AutoModelForCausalLM

base_model = AutoModelForCausalLM.from_pretrained("{base or "<base model>"}")
model = PeftModel.from_pretrained(base_model, "<this folder or Hub repo>")   # then ask questions about the text
```

vLLM (`--enable-lora`, `LoRARequest`), TGI (`LORA_ADAPTERS`) and PEFT's `load_adapter` serve it like any PEFT LoRA.
"""
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{body}")


@dataclass(frozen=True)
class HypernetworkFacts:
    """What the card of a SHINE hypernetwork says about it (the `ShineConfig` fields of the same names)."""

    base_model_name_or_path: str | None
    base_model_weights: str | None
    lora_rank: int
    target_modules: Any
    m2p_layers: int
    num_memory_tokens: int | None
    meta_lora_rank: int
    lora_scale: float
    max_context_tokens: int
    context_overflow: str

    @classmethod
    def of(cls, config: Any) -> HypernetworkFacts:
        """The facts of a `ShineConfig` (or any object with those attributes)."""
        return cls(**{name: getattr(config, name, None) for name in cls.__dataclass_fields__})


def add_hypernetwork_section(directory: str | os.PathLike, config: HypernetworkFacts) -> None:
    """Make the README.md that `PeftModel.save_pretrained` wrote into `directory` a SHINE card (nothing when there is
    none): SHINE's tags and the base model in the metadata; PEFT's untouched "Model Card for Model ID" template is
    replaced by `hypernetwork_card_text`, any other card gets the SHINE section once."""
    path = os.path.join(directory, "README.md")
    if not os.path.isfile(path):
        return
    card = ModelCard.load(path)
    card.data.tags = sorted(set(card.data.tags or []) | set(HYPERNETWORK_TAGS))
    if config.base_model_name_or_path and not card.data.base_model:
        card.data.base_model = config.base_model_name_or_path
    if PEFT_TEMPLATE_TITLE in card.text:
        card.text = hypernetwork_card_text(config)
    elif SHINE_MARK not in card.text:
        card.text += (
            f"\n{SHINE_SECTION}\n\n{_hypernetwork_summary(config)}\n\n{_shine_usage(config.base_model_name_or_path)}"
        )
    card.save(path)


def _hypernetwork_summary(config: HypernetworkFacts) -> str:
    """What the hypernetwork does and was made on, in a paragraph."""
    made_on = _made_on(config.base_model_name_or_path, config.base_model_weights)
    return (
        "A SHINE hypernetwork made with peft-shine (`get_peft_model(base, ShineConfig(...))`, trained with "
        "`transformers.Trainer` or TRL): it reads a context with the frozen base model and writes a "
        f"rank-{config.lora_rank} LoRA for {config.target_modules} in one forward pass, so the model answers questions "
        f"about the text without the text in its prompt. {made_on}"
    ).strip()


def hypernetwork_card_text(config: HypernetworkFacts) -> str:
    """The body of a SHINE hypernetwork's card: what it is, the base it was made on, how to load and use it."""
    base = config.base_model_name_or_path
    return f"""
{SHINE_MARK}{f" for `{base}`" if base else ""}

{_hypernetwork_summary(config)}

Settings: {config.m2p_layers} M2P blocks, {config.num_memory_tokens} memory tokens, meta-LoRA rank
{config.meta_lora_rank}, contexts of up to {config.max_context_tokens} tokens per pass (longer ones:
`context_overflow="{config.context_overflow}"`).

## Use

{_shine_usage(base)}
The generated LoRA of an absorbed text exports as a plain PEFT LoRA: `model.absorb_context(text).save_pretrained(dir)`.

### Framework versions

- PEFT {peft.__version__}
"""


PAPER = "Liu et al., SHINE: Scalable Hyper In-context NEtwork (arXiv:2602.06358, ICML 2026)"


def reference_card(
    config: HypernetworkFacts, source: str, revision: str | None, trainer_state: dict | None, license: str | None
) -> ModelCard:
    """The card of a SHINE adapter converted from the reference code's checkpoint `source` (`peft_shine.reference`)."""
    data = ModelCardData(
        library_name="peft", base_model=config.base_model_name_or_path, tags=sorted(HYPERNETWORK_TAGS), license=license
    )
    license_text = license or "not stated in the source; see the source checkpoint's repository"
    targets = ", ".join(config.target_modules)
    step = f", saved at training step {trainer_state['global_step']}" if "global_step" in (trainer_state or {}) else ""
    body = f"""
# SHINE hypernetwork converted from the paper's checkpoint

The SHINE hypernetwork of {PAPER}, converted with peft-shine (`peft-shine convert-reference`) from the reference
code's checkpoint `{source}`{f" (revision {revision})" if revision else ""}{step}. Reference code:
github.com/MuLabPKU/SHINE (Apache-2.0). License of the weights: {license_text}.

It reads a context with the frozen base `{config.base_model_name_or_path}` and writes a rank-{config.lora_rank} LoRA
for {targets} of every layer in one forward pass ({config.num_memory_tokens} memory slots, meta-LoRA rank
{config.meta_lora_rank}, {config.m2p_layers} M2P blocks, scale {config.lora_scale}; raw memory states and the
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
