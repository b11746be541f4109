"""The user-facing half of `ShineModel`: texts in, generated LoRAs in use, answers out (absorb / use / forget / ask),
and the diagnostics that read contexts. A mixin: `ShineModel` provides the tuner parts it uses (`shine_config`,
`hypernetwork`, `generate_lora`, `model`, `runtime`, the target keys and shapes)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from .absorbed import AbsorbedContext
from .cards import base_weights_of
from .composition import check_weight_count
from .encoding import generate_in_batches
from .generation import base_tokenizer, generate_answers, padded_on_device
from .hypernetwork import context_variance_share
from .layer import ShineState
from .options import AbsorbOptions
from .tokenization import as_text_list, context_token_chunks

ContextInput = str | Sequence[str]


class ContextMethods:
    """absorb_context / use_context / forget / absorbed / ask, and the context diagnostics, of a `ShineModel`."""

    def resolve_tokenizer(self, tokenizer: PreTrainedTokenizerBase | None = None) -> PreTrainedTokenizerBase:
        """The tokenizer to use: the one given (remembered as `self.tokenizer`), else the one remembered, else the
        base model's (`generation.base_tokenizer`; SHINE never changes the tokenizer)."""
        if tokenizer is not None or self.tokenizer is None:
            self.tokenizer = tokenizer or base_tokenizer(self.model)
        return self.tokenizer

    def absorb_options(self, options: AbsorbOptions | None = None, **overrides: Any) -> AbsorbOptions:
        """`options` (default: all from the config) with `overrides`, every field resolved against the adapter's
        `ShineConfig` and checked."""
        return (options or AbsorbOptions()).with_overrides(**overrides).resolved(self.shine_config)

    def context_chunks(
        self,
        context: ContextInput,
        tokenizer: PreTrainedTokenizerBase | None = None,
        options: AbsorbOptions | None = None,
        **overrides: Any,
    ) -> list[list[list[int]]]:
        """Plain-text token ids of each context's chunks (`tokenization.context_token_chunks`) under the absorb
        options (`max_context_tokens`, `context_overflow`, `chunk_overlap_tokens`)."""
        return _chunks(context, self.resolve_tokenizer(tokenizer), self.absorb_options(options, **overrides))

    def tokenize_contexts(
        self,
        context: ContextInput,
        tokenizer: PreTrainedTokenizerBase | None = None,
        options: AbsorbOptions | None = None,
        **overrides: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Texts -> left-padded (N, T) ids and mask of every chunk on the model's device (N = number of contexts
        unless some are chunked)."""
        tokenizer = self.resolve_tokenizer(tokenizer)
        documents = _chunks(context, tokenizer, self.absorb_options(options, **overrides))
        return padded_on_device([chunk for document in documents for chunk in document], tokenizer, self.model)

    @torch.no_grad()
    def absorb_context(
        self,
        context: ContextInput,
        tokenizer: PreTrainedTokenizerBase | None = None,
        *,
        compose: bool = False,
        weights: Sequence[float] | None = None,
        append: bool = False,
        options: AbsorbOptions | None = None,
        **overrides: Any,
    ) -> AbsorbedContext:
        """Read one context (str) or a batch (list of str) and switch the model to the generated LoRA(s):
        chunks -> encode -> combine -> use. Returns the `AbsorbedContext` (exportable as a plain PEFT LoRA).

        One adapter per context (row i of the next forward uses context i, context-major); `compose=True`: one
        adapter for all (their mean or sum, or the weighted sum with `weights`); `append=True`: add this text's chunks
        to the current single adapter without re-encoding it. Per-call choices are `options` (an `AbsorbOptions`)
        and/or its fields as keyword arguments (`max_lora_rank=`, `chunk_combination=`, `context_overflow=`, ...);
        what is not given comes from the `ShineConfig`. Details: docs/api.md."""
        chosen = self.absorb_options(options, **overrides)
        if weights is not None and not compose:
            raise ValueError("weights= mixes several contexts into one adapter; pass compose=True as well.")
        tokenizer = self.resolve_tokenizer(tokenizer)
        documents = _chunks(context, tokenizer, chosen)
        check_weight_count(weights, len(documents))
        ids, mask = padded_on_device([chunk for document in documents for chunk in document], tokenizer, self.model)
        absorbed = AbsorbedContext.from_chunks(
            generate_in_batches(self.generate_lora, self.hypernetwork, ids, mask, chosen.chunk_batch_size),
            [len(document) for document in documents],
            chosen.chunk_combination,
            module_paths={key: path for path, key in self._target_keys.items()},
            context_token_counts=[sum(map(len, document)) for document in documents],
            base_model_name_or_path=getattr(self.model, "name_or_path", None) or None,
            base_model_weights=base_weights_of(self.model),
        )
        if compose:
            absorbed = AbsorbedContext.compose([absorbed], weights, chosen.chunk_combination)
        if append:
            absorbed = AbsorbedContext.extended(self.current_context, absorbed, chosen.chunk_combination)
        absorbed = absorbed.within_rank(chosen.max_lora_rank)
        self.use_context(absorbed)
        return absorbed

    def use_context(self, absorbed: AbsorbedContext | None) -> None:
        """Answer with an `AbsorbedContext` (e.g. one kept from an earlier `absorb_context`); None = base model.
        Raises ValueError for one generated for other target modules or module shapes (another base)."""
        if absorbed is not None:
            absorbed.check_module_shapes(self._key_shapes)
        self.current_context = absorbed
        self.runtime.state = ShineState() if absorbed is None else ShineState("answer", absorbed.factors)

    def forget(self) -> None:
        """Drop the absorbed context: the model computes exactly the base model again. Idempotent."""
        self.use_context(None)

    @contextmanager
    def absorbed(
        self, context: ContextInput, tokenizer: PreTrainedTokenizerBase | None = None, **options: Any
    ) -> Iterator[AbsorbedContext]:
        """`with model.absorbed(text) as ctx:` absorbs for the block (same arguments as `absorb_context`) and restores
        the previous context on exit, also on an exception."""
        previous = self.current_context
        try:
            yield self.absorb_context(context, tokenizer, **options)
        finally:
            self.use_context(previous)

    @contextmanager
    def without_context(self) -> Iterator[None]:
        """A block in which the model computes exactly the base model (no generated LoRA, no meta-LoRA), e.g. a
        teacher pass during training; the context in use is back afterwards, also on an exception."""
        with self.runtime.using(ShineState()):
            yield

    @torch.no_grad()
    def ask(
        self,
        question: str | Sequence[str],
        max_new_tokens: int = 64,
        tokenizer: PreTrainedTokenizerBase | None = None,
        **generate_kwargs: Any,
    ) -> str | list[str]:
        """Answer a question (or a list, context-major for batched contexts) from the absorbed context, with the
        question alone in the chat template (the training format); greedy unless `generate_kwargs` say otherwise."""
        tokenizer = self.resolve_tokenizer(tokenizer)
        questions = as_text_list(question, what="question")
        answers = generate_answers(self.model, tokenizer, questions, max_new_tokens, **generate_kwargs)
        return answers[0] if isinstance(question, str) else answers

    # ----------------------------------------------------------------------------------------------------------------
    # Diagnostics

    @torch.no_grad()
    def calibrate_memory_statistics(
        self, contexts: Sequence[str], tokenizer: PreTrainedTokenizerBase | None = None, batch_size: int = 8
    ) -> None:
        """Fold the memory states of `contexts` into the running standardisation statistics (training does this
        automatically; call it to give an untrained or newly targeted hypernetwork sensible statistics)."""
        if self.hypernetwork.standardizer is None:
            raise ValueError(
                "This SHINE adapter feeds raw memory states to the M2P (standardize_memory_states=False, as the "
                "reference code): it keeps no statistics to calibrate."
            )
        contexts = as_text_list(contexts)
        for start in range(0, len(contexts), batch_size):
            ids, mask = self.tokenize_contexts(list(contexts[start : start + batch_size]), tokenizer)
            self.generate_lora(ids, mask, update_statistics=True)

    @torch.no_grad()
    def context_variance_share(
        self, contexts: Sequence[str], tokenizer: PreTrainedTokenizerBase | None = None
    ) -> dict[str, float]:
        """Across-context variance share of the generated deltas for these contexts (per module key and "all"):
        0 means every context gets the same LoRA. See `hypernetwork.context_variance_share`."""
        if len(as_text_list(contexts)) < 2:
            raise ValueError("context_variance_share compares contexts with each other: pass at least two.")
        ids, mask = self.tokenize_contexts(contexts, tokenizer)
        return context_variance_share(self.generate_lora(ids, mask))


def _chunks(context: ContextInput, tokenizer: PreTrainedTokenizerBase, chosen: AbsorbOptions) -> list[list[list[int]]]:
    """Each context's chunk token ids under resolved options and a resolved tokenizer (the one place both are used)."""
    return context_token_chunks(
        tokenizer,
        as_text_list(context),
        chosen.max_context_tokens,
        chosen.context_overflow,
        chosen.chunk_overlap_tokens,
    )
