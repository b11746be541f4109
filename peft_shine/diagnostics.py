"""Diagnostics of a SHINE model's hypernetwork: folding contexts into the memory-state statistics, and how much the
generated LoRAs differ between contexts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from transformers import PreTrainedTokenizerBase

from .hypernetwork import context_variance_share
from .tokenization import as_text_list

if TYPE_CHECKING:
    from .model import ShineModel


@torch.no_grad()
def calibrate_memory_statistics(
    shine: ShineModel,
    contexts: Sequence[str],
    tokenizer: PreTrainedTokenizerBase | None = None,
    batch_size: int = 8,
) -> None:
    """Fold the memory states of `contexts` into the running standardisation statistics (training does this
    automatically; call it to give an untrained or newly targeted hypernetwork sensible statistics)."""
    if shine.hypernetwork.standardizer is None:
        raise ValueError(
            "This SHINE adapter feeds raw memory states to the M2P (standardize_memory_states=False, as the reference "
            "code): it keeps no statistics to calibrate."
        )
    contexts = as_text_list(contexts)
    for start in range(0, len(contexts), batch_size):
        ids, mask = shine.tokenize_contexts(list(contexts[start : start + batch_size]), tokenizer)
        shine.generate_lora(ids, mask, update_statistics=True)


@torch.no_grad()
def context_variance_share_of(
    shine: ShineModel, contexts: Sequence[str], tokenizer: PreTrainedTokenizerBase | None = None
) -> dict[str, float]:
    """Across-context variance share of the generated deltas for these contexts (per module key and "all"):
    0 means every context gets the same LoRA. See `hypernetwork.context_variance_share`."""
    if len(as_text_list(contexts)) < 2:
        raise ValueError("context_variance_share compares contexts with each other: pass at least two.")
    ids, mask = shine.tokenize_contexts(contexts, tokenizer)
    return context_variance_share(shine.generate_lora(ids, mask))
