"""Padding token-id lists into batches: left padding for prompts and contexts (generation, encoding), right padding
for training rows and labels (padded with `IGNORE_INDEX`), and the pad id a tokenizer implies."""

from __future__ import annotations

import torch
from transformers import PreTrainedTokenizerBase

IGNORE_INDEX = -100
"""The label of a position without loss (prompt tokens, padding): what `torch.nn.functional.cross_entropy` skips."""


def pad_sequences(sequences: list[list[int]], pad_value: int, side: str = "left") -> tuple[torch.Tensor, torch.Tensor]:
    """Token id lists -> a (B, T) LongTensor filled with `pad_value` and its (B, T) attention mask, each sequence
    placed at the right end (`side="left"` padding) or at the left end (`side="right"`)."""
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', got {side!r}.")
    length = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), length), pad_value, dtype=torch.long)
    mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if not seq:
            continue
        span = slice(length - len(seq), length) if side == "left" else slice(0, len(seq))
        ids[row, span] = torch.tensor(seq, dtype=torch.long)
        mask[row, span] = 1
    return ids, mask


def left_pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad to a (B, T) LongTensor of ids and its (B, T) attention mask."""
    return pad_sequences(sequences, pad_id, "left")


def right_pad(sequences: list[list[int]], pad_value: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to a (B, L) LongTensor filled with `pad_value` and its (B, L) attention mask."""
    return pad_sequences(sequences, pad_value, "right")


def pad_id_of(tokenizer: PreTrainedTokenizerBase) -> int:
    """The tokenizer's pad id, else its EOS id, else 0 (padded positions are always masked)."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return candidate
    return 0
