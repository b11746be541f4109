"""Text <-> tokens for SHINE: context encoding (plain text, left padding, explicit overflow policy) and the
question-only chat prompt used both in training and by `ask()`."""

from __future__ import annotations

import bisect
import math
import re
import warnings
from collections.abc import Sequence

from transformers import PreTrainedTokenizerBase


def as_text_list(context: str | Sequence[str], what: str = "context") -> list[str]:
    """Validate one text or a sequence of texts; returns a list. Raises TypeError / ValueError that name the problem."""
    texts = [context] if isinstance(context, str) else context
    if isinstance(texts, (bytes, bytearray)) or not isinstance(texts, Sequence):
        hint = " (decode bytes with .decode('utf-8'))" if isinstance(texts, (bytes, bytearray)) else ""
        raise TypeError(f"The {what} must be a str or a list of str, got {type(context).__name__}{hint}.")
    if len(texts) == 0:
        raise ValueError(f"No {what} given: pass a non-empty str or a non-empty list of str.")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(
                f"{what} {i} must be a str, got {type(text).__name__} (decode bytes with .decode('utf-8'))."
            )
        if not text.strip():
            raise ValueError(f"{what} {i} is empty or whitespace only; there is nothing to read.")
    return list(texts)


def encode_plain(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> list[list[int]]:
    """Token ids of plain text: no BOS/EOS added, and special-token strings such as `<|im_end|>` in the text are
    split like ordinary characters, so a document can never inject control tokens."""
    return tokenizer(texts, add_special_tokens=False, split_special_tokens=True)["input_ids"]


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) character spans of the sentences of `text`, split at [.!?] followed by whitespace or at line
    breaks."""
    spans, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        spans.append((start, match.start()))
        start = match.end()
    spans.append((start, len(text)))
    return spans


def chunk_spans(num_tokens: int, boundaries: set[int], max_tokens: int, overlap: int = 0) -> list[tuple[int, int]]:
    """Token spans [start, end) of balanced chunks of at most `max_tokens` tokens that cover all `num_tokens` tokens.

    While more than `max_tokens` tokens remain, the fewest chunks k that can cover them are planned and the next chunk
    aims at an equal share (about remaining / k tokens, plus overlaps): it ends at the sentence boundary (a token index
    in `boundaries`) nearest that aim that fits, or at the aim when no boundary fits. Balanced chunks waste no padding
    when they are encoded as one batch (600 tokens at a 384-token limit give two chunks of ~300, not 384 + 216). The
    next chunk starts `overlap` tokens before the previous end; with overlap 0 every token is in exactly one chunk.
    """
    if not 0 <= overlap < max_tokens:
        raise ValueError(f"chunk overlap must be in [0, max_context_tokens={max_tokens}), got {overlap}.")
    spans, start = [], 0
    while num_tokens - start > max_tokens:
        remaining = num_tokens - start
        chunks_left = math.ceil((remaining - overlap) / (max_tokens - overlap))
        aim = start + math.ceil((remaining + (chunks_left - 1) * overlap) / chunks_left)
        fitting = [b for b in boundaries if start + overlap < b <= start + max_tokens]
        end = min(fitting, key=lambda b: (abs(b - aim), -b)) if fitting else aim
        spans.append((start, end))
        start = end - overlap
    spans.append((start, num_tokens))
    return spans


def split_into_chunks(
    tokenizer: PreTrainedTokenizerBase, text: str, max_tokens: int, overlap: int = 0
) -> list[list[int]]:
    """Plain-text token ids of `text` cut into chunks of at most `max_tokens`, on sentence or line boundaries where
    possible (see `chunk_spans`). The chunks are slices of the whole text's tokenization."""
    encoding = tokenizer(text, add_special_tokens=False, split_special_tokens=True, return_offsets_mapping=True)
    ids, offsets = encoding["input_ids"], encoding["offset_mapping"]
    token_ends = [end for _, end in offsets]
    # a chunk may start at the first token that ends after a sentence start
    boundaries = {bisect.bisect_right(token_ends, start) for start, _ in sentence_spans(text) if start > 0}
    return [ids[start:end] for start, end in chunk_spans(len(ids), boundaries, max_tokens, overlap)]


def fit_context_lengths(token_ids: list[list[int]], max_tokens: int, overflow: str) -> list[list[int]]:
    """Fit contexts that are encoded in one pass each: "truncate" keeps the first `max_tokens` tokens of a longer
    context and warns how many were dropped; "error" and "chunk" raise (one pass cannot chunk: this is the training
    path; `absorb_context` chunks long contexts itself)."""
    fitted = []
    for i, ids in enumerate(token_ids):
        if len(ids) > max_tokens:
            if overflow != "truncate":
                raise ValueError(
                    f"Context {i} has {len(ids)} tokens, more than max_context_tokens={max_tokens}, and it must be "
                    f"encoded in one pass. Raise max_context_tokens, filter or split such contexts, or set "
                    f"context_overflow='truncate' to keep only the start."
                )
            warnings.warn(
                f"Context {i} has {len(ids)} tokens; truncated to max_context_tokens={max_tokens} "
                f"({len(ids) - max_tokens} tokens dropped).",
                stacklevel=3,
            )
            ids = ids[:max_tokens]
        fitted.append(ids)
    return fitted


def context_token_chunks(
    tokenizer: PreTrainedTokenizerBase, texts: list[str], max_tokens: int, overflow: str, overlap: int = 0
) -> list[list[list[int]]]:
    """Plain-text token ids of each text's chunks: one chunk per text, except that under the "chunk" policy a text
    longer than `max_tokens` is split on sentence/line boundaries (`split_into_chunks`, `overlap` tokens shared);
    "truncate" and "error" apply as in `fit_context_lengths`."""
    token_ids = encode_plain(tokenizer, texts)
    if overflow != "chunk":
        return [[ids] for ids in fit_context_lengths(token_ids, max_tokens, overflow)]
    return [
        split_into_chunks(tokenizer, text, max_tokens, overlap) if len(ids) > max_tokens else [ids]
        for text, ids in zip(texts, token_ids, strict=True)
    ]


ICL_TEMPLATE = "{context}\n\nQuestion: {question}"
"""The user turn of the in-context baseline (and of the distillation teacher): context, blank line, question."""


ICL_SHORT_TEMPLATE = (
    "Answer the question using only the text below. Reply with the shortest phrase copied from the text.\n\n"
    "Text: {context}\n\nQuestion: {question}"
)
"""An in-context user turn that asks for a short answer copied from the text (the prompt a user would write for
extractive QA; SmolLM2 otherwise answers in full sentences)."""

ICL_TEMPLATES = {"icl": ICL_TEMPLATE, "icl_short": ICL_SHORT_TEMPLATE}
"""The in-context baselines by method name."""


def icl_prompt(record: dict, template: str = ICL_TEMPLATE) -> str:
    """The in-context user turn: `template` (default `ICL_TEMPLATE`) filled with the record's context and question."""
    return template.format(context=record["context"], question=record["question"])


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
