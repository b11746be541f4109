"""Teacher-forced answer likelihood per method (see `answer_likelihood.py`): none and icl with no context absorbed,
shine with each record's context absorbed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from peft import PeftModel
from transformers import PreTrainedTokenizerBase

from .answer_likelihood import LIKELIHOOD_METHODS, answer_log_likelihoods, likelihood_gain_summary, record_prompt
from .methods import absorbed_rounds
from .records import Record


def likelihood_runs(
    model: PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[Record],
    methods: Sequence[str],
    batch_size: int,
) -> dict[str, list[dict[str, float]]]:
    """Per-record log-likelihood of the first gold answer (`answer_log_likelihoods`) for each of `methods` among
    none / shine / icl: none and icl with no context absorbed, shine with each record's context absorbed (in batches
    of `batch_size` distinct contexts, one question per context per forward pass)."""
    results: dict[str, list[dict[str, float]]] = {}
    for method in [m for m in methods if m in LIKELIHOOD_METHODS]:
        rows: list[dict[str, float]] = [{}] * len(records)
        model.forget()
        if method == "shine":
            for indices, _ in absorbed_rounds(model, tokenizer, records, batch_size):
                chosen = [records[index] for index in indices]
                scored = answer_log_likelihoods(
                    model, tokenizer, [r["question"] for r in chosen], [r["answers"][0] for r in chosen]
                )
                for index, score in zip(indices, scored):
                    rows[index] = score
        else:
            for start in range(0, len(records), batch_size):
                chosen = records[start : start + batch_size]
                prompts = [record_prompt(r, method) for r in chosen]
                scored = answer_log_likelihoods(model, tokenizer, prompts, [r["answers"][0] for r in chosen])
                rows[start : start + len(chosen)] = scored
        results[method] = rows
    return results


def attach_likelihoods(
    results: dict[str, Any], likelihoods: dict[str, list[dict[str, float]]], no_context: list[dict] | None
) -> None:
    """Add each method's likelihood gains (`likelihood_gain_summary`) to its summary in `results` and every record's
    likelihood to its prediction item. `none`'s rows are taken from the `no_context` items (the `none` predictions of
    this run or of a reference) when `likelihoods` lacks them and the items carry them; they are added to
    `likelihoods` too."""
    if "none" not in likelihoods and no_context is not None:
        if all("log_likelihood" in item for item in no_context):
            likelihoods["none"] = [item["log_likelihood"] for item in no_context]
    if not likelihoods:
        return
    gains = likelihood_gain_summary(likelihoods)
    for name, rows in likelihoods.items():
        if name in results:
            results[name]["likelihood"] = gains[name]
            for item, row in zip(results[name]["predictions"], rows):
                item["log_likelihood"] = row
