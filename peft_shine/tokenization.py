"""Text <-> tokens for SHINE: context encoding (plain text, left padding, explicit overflow policy) and the
question-only chat prompt used both in training and by `ask()`."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from transformers import PreTrainedTokenizerBase


def as_text_list(context: str | Sequence[str], what: str = "context") -> list[str]:
    """Validate one text or a sequence of texts; returns a list. Raises TypeError / ValueError that name the problem."""
    texts = [context] if isinstance(context, str) else context
    if isinstance(texts, (bytes, bytearray)) or not isinstance(texts, Sequence):
        raise TypeError(f"The {what} must be a str or a list of str, got {type(context).__name__}.")
    if len(texts) == 0:
        raise ValueError(f"No {what} given: pass a non-empty str or a non-empty list of str.")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(
                f"{what} {i} must be a str, got {type(text).__name__} (decode bytes with .decode('utf-8'))."
            )
        if not text.strip():
            raise ValueError(f"{what} {i} is empty or whitespace only; there is nothing to absorb.")
    return list(texts)


def encode_plain(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> list[list[int]]:
    """Token ids of plain text: no BOS/EOS added, and special-token strings such as `<|im_end|>` in the text are
    split like ordinary characters, so a document can never inject control tokens."""
    return tokenizer(texts, add_special_tokens=False, split_special_tokens=True)["input_ids"]


def fit_context_lengths(token_ids: list[list[int]], max_tokens: int, overflow: str) -> list[list[int]]:
    """Apply the overflow policy: "error" raises for a context over `max_tokens`, "truncate" keeps its first
    `max_tokens` tokens and warns how many were dropped."""
    fitted = []
    for i, ids in enumerate(token_ids):
        if len(ids) > max_tokens:
            if overflow == "error":
                raise ValueError(
                    f"Context {i} has {len(ids)} tokens, more than max_context_tokens={max_tokens}. Raise "
                    f"max_context_tokens, split the text, or set context_overflow='truncate' to keep only the start."
                )
            warnings.warn(
                f"Context {i} has {len(ids)} tokens; truncated to max_context_tokens={max_tokens} "
                f"({len(ids) - max_tokens} tokens dropped).",
                stacklevel=3,
            )
            ids = ids[:max_tokens]
        fitted.append(ids)
    return fitted


def left_pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad to a (B, T) LongTensor of ids and its (B, T) attention mask."""
    length = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            ids[row, length - len(seq) :] = torch.tensor(seq, dtype=torch.long)
            mask[row, length - len(seq) :] = 1
    return ids, mask


def pad_id_of(tokenizer: PreTrainedTokenizerBase) -> int:
    """The tokenizer's pad id, else its EOS id, else 0 (padded positions are always masked)."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return candidate
    return 0


ICL_TEMPLATE = "{context}\n\nQuestion: {question}"
"""The user turn of the in-context baseline (and of the distillation teacher): context, blank line, question."""


def icl_prompt(record: dict) -> str:
    """The in-context user turn: `ICL_TEMPLATE` filled with the record's `context` and `question`."""
    return ICL_TEMPLATE.format(context=record["context"], question=record["question"])


def question_prompt_ids(tokenizer: PreTrainedTokenizerBase, question: str) -> list[int]:
    """Chat-template tokens of a one-turn user question followed by the assistant generation prompt."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            "The tokenizer has no chat template; SHINE asks questions in the chat format it was trained with. "
            "Use an instruct model's tokenizer or set tokenizer.chat_template."
        )
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], add_generation_prompt=True, tokenize=True, return_dict=False
    )
    return list(ids)
