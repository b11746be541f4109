"""Chat encoding with answer-only labels: a conversation of (user, assistant) turns as `input_ids` (L,) and `labels`
(L,) that keep the assistant turns' tokens and are `IGNORE_INDEX` elsewhere, and the two stage-1 instructions."""

from __future__ import annotations

from collections.abc import Sequence

from transformers import PreTrainedTokenizerBase

from ...padding import IGNORE_INDEX
from ...tokenization import question_prompt_ids

RECON_INSTRUCTION = "Repeat the text you have read."
COMP_INSTRUCTION = "Continue the text you have read, from its beginning to the end."

QA = tuple[str, Sequence[str]]


def _chat_ids(tokenizer: PreTrainedTokenizerBase, messages: list[dict], add_generation_prompt: bool) -> list[int]:
    """Chat-template token ids of `messages`."""
    ids = tokenizer.apply_chat_template(
        messages, add_generation_prompt=add_generation_prompt, tokenize=True, return_dict=False
    )
    return list(ids)


def _check_extends(prefix: list[int], ids: list[int], what: str) -> None:
    """Raise unless `ids` starts with `prefix` (the chat template must render a conversation prefix-consistently)."""
    if ids[: len(prefix)] != prefix:
        raise ValueError(
            f"The chat template is not prefix-consistent: {what}. Answer-only labels need a template whose rendering "
            "of a conversation starts with the rendering of every shorter conversation."
        )


def encode_chat(tokenizer: PreTrainedTokenizerBase, turns: Sequence[QA]) -> tuple[list[int], list[int]]:
    """Encode a chat of (user, assistant) turns; returns `input_ids` (L,) and `labels` (L,), where labels keep the
    tokens each assistant turn adds beyond the prompt rendered with `add_generation_prompt=True` (its content and
    end-of-turn tokens) and are -100 elsewhere. The first prompt is exactly `question_prompt_ids(tokenizer, q1)`, the
    prompt `ask()` uses. Raises ValueError for an empty turn or a template that is not prefix-consistent."""
    if not turns:
        raise ValueError("A chat example needs at least one (question, answer) turn.")
    input_ids: list[int] = []
    labels: list[int] = []
    messages: list[dict] = []
    for index, (question, answer) in enumerate(turns):
        if not question.strip() or not answer.strip():
            raise ValueError(f"Turn {index} has an empty question or answer; there would be nothing to learn.")
        messages.append({"role": "user", "content": question})
        prompt = question_prompt_ids(tokenizer, question) if index == 0 else _chat_ids(tokenizer, messages, True)
        _check_extends(input_ids, prompt, f"the prompt of turn {index} does not extend turn {index - 1}")
        messages.append({"role": "assistant", "content": answer})
        full = _chat_ids(tokenizer, messages, False)
        _check_extends(prompt, full, f"the answer of turn {index} does not extend its prompt")
        if len(full) == len(prompt):
            raise ValueError(f"The answer of turn {index} adds no tokens to the chat; there would be nothing to learn.")
        labels += [IGNORE_INDEX] * (len(prompt) - len(input_ids)) + full[len(prompt) :]
        input_ids = full
    return input_ids, labels
