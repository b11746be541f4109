"""The answering methods that need no training: `none` (question alone), `icl` / `icl_short` (context in the prompt)
and `shine` (contexts absorbed in batches, questions asked in rounds of one per context)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from peft import PeftModel
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..tokenization import ICL_SHORT_TEMPLATE, icl_prompt
from .records import Record, chunks, group_by_context
from .timing import model_device, timed


@dataclass(frozen=True)
class EvalSettings:
    """How the methods run: batching, generation length, the SFT baseline's training and its base-model loader."""

    batch_size: int = 8
    max_new_tokens: int = 32
    sft_epochs: int = 10
    sft_lr: float = 1e-3
    seed: int = 0
    base_factory: Callable[[], PreTrainedModel] | None = None


@dataclass
class MethodRun:
    """One method's answers (in record order) and its total adaptation and generation seconds."""

    predictions: list[str]
    num_contexts: int = 0
    adapt_seconds: float = 0.0
    generate_seconds: float = 0.0


MethodRunner = Callable[[PeftModel, PreTrainedTokenizerBase, Sequence[Record], EvalSettings, tqdm], MethodRun]


def _run_prompted(
    model: PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[Record],
    settings: EvalSettings,
    progress: tqdm,
    prompt: Callable[[Record], str],
) -> MethodRun:
    """The base model (after `forget()`) answers `prompt(record)` for each record, `batch_size` at a time."""
    model.forget()
    run = MethodRun(predictions=[])
    for batch in chunks(records, settings.batch_size):
        texts = [prompt(record) for record in batch]
        answers, seconds = timed(
            model_device(model), model.ask, texts, max_new_tokens=settings.max_new_tokens, tokenizer=tokenizer
        )
        run.predictions.extend(answers)
        run.generate_seconds += seconds
        progress.update(len(batch))
    return run


def run_none(
    model: PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[Record],
    settings: EvalSettings,
    progress: tqdm,
) -> MethodRun:
    """No context: the base model answers the question alone."""
    return _run_prompted(model, tokenizer, records, settings, progress, lambda record: record["question"])


def run_icl(
    model: PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[Record],
    settings: EvalSettings,
    progress: tqdm,
) -> MethodRun:
    """In-context: the base model answers `ICL_TEMPLATE` (context, blank line, "Question: ...") as the user turn."""
    return _run_prompted(model, tokenizer, records, settings, progress, icl_prompt)


run_icl_short: MethodRunner = functools.partial(
    _run_prompted, prompt=functools.partial(icl_prompt, template=ICL_SHORT_TEMPLATE)
)
"""In-context with `ICL_SHORT_TEMPLATE`: the context and a request for a short answer copied from it."""


def question_rounds(groups: Sequence[Sequence[int]]) -> list[list[tuple[int, int]]]:
    """Split the questions of several contexts into rounds with at most one question per context: round j holds
    (context position, record index) for the j-th question of every context that has one."""
    longest = max(len(group) for group in groups)
    return [[(c, group[j]) for c, group in enumerate(groups) if j < len(group)] for j in range(longest)]


def run_shine(
    model: PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[Record],
    settings: EvalSettings,
    progress: tqdm,
) -> MethodRun:
    """SHINE: each batch of up to `batch_size` distinct contexts is absorbed in one pass; their questions are then
    asked in rounds of one question per context (row i uses context i). The model forgets afterwards."""
    run = MethodRun(predictions=[""] * len(records), num_contexts=len(group_by_context(records)))
    device = model_device(model)
    for indices, absorb_seconds in absorbed_rounds(model, tokenizer, records, settings.batch_size):
        run.adapt_seconds += absorb_seconds
        questions = [records[index]["question"] for index in indices]
        answers, seconds = timed(
            device, model.ask, questions, max_new_tokens=settings.max_new_tokens, tokenizer=tokenizer
        )
        for index, answer in zip(indices, answers):
            run.predictions[index] = answer
        run.generate_seconds += seconds
        progress.update(len(indices))
    return run


def absorbed_rounds(
    model: PeftModel, tokenizer: PreTrainedTokenizerBase, records: Sequence[Record], batch_size: int
) -> Iterator[tuple[list[int], float]]:
    """Absorb the distinct contexts `batch_size` at a time and yield, for each round of one question per context,
    (record indices, seconds of the absorb that round belongs to, 0 after its first round) with the model set to
    those records' contexts (row i uses the context of record indices[i]). The model forgets at the end."""
    device = model_device(model)
    for batch in chunks(list(group_by_context(records).items()), batch_size):
        absorbed, seconds = timed(device, model.absorb_context, [context for context, _ in batch], tokenizer=tokenizer)
        for round_ in question_rounds([indices for _, indices in batch]):
            model.use_context(absorbed.select([position for position, _ in round_]))
            yield [index for _, index in round_], seconds
            seconds = 0.0
    model.forget()
