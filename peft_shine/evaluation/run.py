"""`evaluate`: every method on every record, scored, split and timed, in one JSON-serialisable result."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from peft import PeftModel
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..qa_records import validate_qa_record
from ..tokenization import ICL_TEMPLATES
from .likelihood import attach_likelihoods, likelihood_runs
from .methods import EvalSettings, MethodRunner, run_icl, run_icl_short, run_none, run_shine
from .records import Record
from .report import summarize_run
from .sft import require_base_factory, run_sft
from .splits import attach_copied_shares, gap_closure, question_splits, split_scores

METHODS: dict[str, MethodRunner] = {
    "none": run_none,
    "icl": run_icl,
    "icl_short": run_icl_short,
    "shine": run_shine,
    "sft": run_sft,
}


def _check_methods(methods: Sequence[str], settings: EvalSettings) -> None:
    """Raise ValueError for an unknown method, `sft` without a base loader, or sizes out of range."""
    unknown = [name for name in methods if name not in METHODS]
    if unknown:
        raise ValueError(f"Unknown method(s) {unknown}; choose from {list(METHODS)}.")
    if "sft" in methods:
        require_base_factory(settings)
    if settings.batch_size < 1 or settings.max_new_tokens < 1 or settings.sft_epochs < 0:
        raise ValueError("batch_size and max_new_tokens must be positive and sft_epochs non-negative.")


def evaluate(
    model: PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[Record],
    methods: Sequence[str] = ("none", "icl", "shine"),
    batch_size: int = 8,
    max_new_tokens: int = 32,
    base_factory: Callable[[], PreTrainedModel] | None = None,
    sft_epochs: int = 10,
    seed: int = 0,
    sft_lr: float = 1e-3,
    likelihood: bool = False,
    reference: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Answer every record with each method and score the answers; the model is in eval mode meanwhile and ends with
    no context absorbed. With `likelihood`, also the teacher-forced log-likelihood of the first gold answer under
    none / shine / icl (those of `methods`; see `peft_shine.evaluation.answer_likelihood`).

    Returns a JSON-serialisable dict: `num_records`; `methods`: name -> {`f1`, `em` (and `accuracy` when records have
    `options`): {`mean`, `ci_low`, `ci_high`}, `adapt_seconds_per_context` (0 for methods without adaptation),
    `generate_seconds_per_question`, `predictions`: [{`id`, `question`, `prediction`, `answers`, `f1`, `em` (and
    `accuracy`; `copied` when `none` ran, see `copied_share`; with `likelihood`: `log_likelihood` {`sum`, `tokens`,
    `first`})}] in record order, `splits`: split name -> {`count`, `f1`, `copied`, with `likelihood`: `likelihood`
    (see `split_scores`)}, with `likelihood`: `likelihood` {`nats_per_token`, `first_token`, gains over none}};
    `splits`: split name -> record indices (`question_splits`:
    open-vocabulary answers, the rest, and answer kinds); `gap_closure` (see `gap_closure`); `config`: the settings.
    `base_factory` (a loader of the plain base model) is required for the `sft` method.

    `reference`: the results of an earlier `evaluate` on the same records (same ids, same order) that ran `none`
    (with `likelihood` if this run has it). When `none` is not among `methods`, its predictions and likelihoods are
    taken from there for the splits and likelihood gains, so comparing many SHINE adapters runs the baseline once.
    """
    settings = EvalSettings(batch_size, max_new_tokens, sft_epochs, sft_lr, seed, base_factory)
    _check_methods(methods, settings)
    if not records:
        raise ValueError("No records to evaluate.")
    records = [validate_qa_record(record, f"record {index}") for index, record in enumerate(records)]
    was_training = model.training
    model.eval()
    try:
        results = {name: _evaluate_method(name, model, tokenizer, records, settings) for name in methods}
        likelihoods = likelihood_runs(model, tokenizer, records, methods, batch_size) if likelihood else None
    finally:
        model.forget()
        model.train(was_training)
    no_context = results["none"]["predictions"] if "none" in results else _reference_none(reference, records)
    if likelihoods is not None:
        attach_likelihoods(results, likelihoods, no_context)
    no_context_answers = None if no_context is None else [item["prediction"] for item in no_context]
    if no_context_answers is not None:
        attach_copied_shares(results, records, no_context_answers)
    splits = question_splits(records, no_context_answers)
    for name, summary in results.items():
        summary["splits"] = split_scores(name, summary, splits, likelihoods, seed)
    output = {"num_records": len(records), "methods": results, "splits": splits}
    output["config"] = _config(settings, methods, likelihood, model)
    output["gap_closure"] = gap_closure(output)
    return output


def _config(settings: EvalSettings, methods: Sequence[str], likelihood: bool, model: PeftModel) -> dict[str, Any]:
    """The settings of a run as they are saved with its results."""
    config = {key: value for key, value in asdict(settings).items() if key != "base_factory"}
    config.update(
        methods=list(methods),
        icl_templates={name: ICL_TEMPLATES[name] for name in methods if name in ICL_TEMPLATES},
        likelihood=likelihood,
        base_model=getattr(model, "name_or_path", None),
    )
    return config


def _reference_none(reference: dict[str, Any] | None, records: Sequence[Record]) -> list[dict] | None:
    """The `none` per-item results of `reference`, checked to be about the same records; None without a reference."""
    if reference is None:
        return None
    items = reference.get("methods", {}).get("none", {}).get("predictions")
    if items is None:
        raise ValueError("The reference results hold no 'none' method; evaluate the baseline with methods=('none',).")
    if [item["question"] for item in items] != [record["question"] for record in records]:
        raise ValueError("The reference results were computed on other records (questions differ); use the same file.")
    return items


def _evaluate_method(
    name: str, model: PeftModel, tokenizer: PreTrainedTokenizerBase, records: Sequence[Record], settings: EvalSettings
) -> dict[str, Any]:
    """One method's run over the records, with a progress bar, summarised (see `summarize_run`)."""
    with tqdm(total=len(records), desc=name, unit="question") as progress:
        run = METHODS[name](model, tokenizer, records, settings, progress)
    return summarize_run(records, run, settings.seed)
