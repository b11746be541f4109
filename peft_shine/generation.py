"""Answering questions with a causal LM: the one generation path behind `ShineModel.ask`, the evaluation's baselines
and the CLI. A question goes alone into the chat template's user turn (SHINE's training format), prompts are
left-padded into one batch, decoding is greedy unless the caller says otherwise."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from .default_base import pretrained_source
from .padding import left_pad, pad_id_of
from .tokenization import question_prompt_ids


def base_tokenizer(model: torch.nn.Module) -> PreTrainedTokenizerBase:
    """`AutoTokenizer.from_pretrained(model.name_or_path)` (the default's Hub id finds the embedded copy offline, see
    `defaults.pretrained_source`); ValueError naming what was tried and the fix when the model has no name_or_path or
    nothing loads from it."""
    source = getattr(model, "name_or_path", None)
    if source:
        try:
            return AutoTokenizer.from_pretrained(pretrained_source(source))
        except (OSError, ValueError, TypeError, KeyError) as error:
            source = f"{source!r} ({type(error).__name__})"
    raise ValueError(
        f"No tokenizer found for this SHINE model (tried: {source or 'the base has no name_or_path'}). Pass one: "
        "`model.absorb_context(text, tokenizer=AutoTokenizer.from_pretrained(<base model>))`."
    )


def padded_on_device(
    sequences: list[list[int]], tokenizer: PreTrainedTokenizerBase, model: torch.nn.Module
) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded (N, T) ids and mask of token id lists on the device of `model`'s input embeddings. Raises
    ValueError when an id (or the pad id, where padding is needed) is outside the model's vocabulary: the tokenizer
    belongs to another model."""
    weight = model.get_input_embeddings().weight
    ids, mask = left_pad(sequences, pad_id_of(tokenizer))
    largest = int(ids.max())
    if largest >= weight.shape[0]:
        raise ValueError(
            f"Token id {largest} from the tokenizer ({getattr(tokenizer, 'name_or_path', '') or 'unnamed'}) is "
            f"outside the base model's vocabulary of {weight.shape[0]} embeddings: the tokenizer belongs to "
            "another model. Pass the base model's own tokenizer (`tokenizer=`)."
        )
    return ids.to(weight.device), mask.to(weight.device)


@torch.no_grad()
def generate_answers(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    questions: Sequence[str],
    max_new_tokens: int = 32,
    **generate_kwargs: Any,
) -> list[str]:
    """Answers (stripped, special tokens removed) of a causal LM (transformers model or PeftModel) to N questions,
    each alone in the chat template's user turn; one left-padded (N, T) batch, greedy unless `generate_kwargs` (passed
    to `model.generate`) say otherwise."""
    prompts = [question_prompt_ids(tokenizer, question) for question in questions]
    ids, mask = padded_on_device(prompts, tokenizer, model)
    generate_kwargs.setdefault("do_sample", False)
    generate_kwargs.setdefault("pad_token_id", pad_id_of(tokenizer))
    output = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, **generate_kwargs)
    return [text.strip() for text in tokenizer.batch_decode(output[:, ids.shape[1] :], skip_special_tokens=True)]
