"""Question splits: open-vocabulary answers (the copying skill: a word only the context can give) against the rest,
and answer kinds; the share of an answer's new words a prediction copied; scores per split; the gap closure."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..tokenization import ICL_TEMPLATES
from .answer_likelihood import likelihood_gain_summary
from .metrics import mean_with_ci, normalize_answer
from .records import Record


def _words(text: str) -> set[str]:
    return set(normalize_answer(text).split())


def is_open_vocabulary(record: Record, no_context_prediction: str) -> bool:
    """True when the first gold answer has a (normalised) word that neither the question nor the base model's
    no-context answer contains: the answer has to be copied from the context."""
    return bool(_words(record["answers"][0]) - _words(record["question"]) - _words(no_context_prediction))


def copied_share(record: Record, prediction: str, no_context_prediction: str) -> float | None:
    """Share of the gold answer's new words (normalised words of the first gold answer that neither the question nor
    the no-context answer contains) that the prediction contains: 1.0 when every piece only the context could give was
    copied; None when the answer has no new word. Unlike F1 it gives no credit for generic words (gold "Ostrel River",
    answer "Borlok River": F1 0.5, copied 0.0)."""
    novel = _words(record["answers"][0]) - _words(record["question"]) - _words(no_context_prediction)
    if not novel:
        return None
    return len(novel & _words(prediction)) / len(novel)


def attach_copied_shares(
    results: dict[str, Any], records: Sequence[Record], no_context_predictions: Sequence[str]
) -> None:
    """Add `copied` (see `copied_share`) to every prediction item of every method's summary in `results`."""
    for summary in results.values():
        for item, record, baseline in zip(summary["predictions"], records, no_context_predictions):
            item["copied"] = copied_share(record, item["prediction"], baseline)


def question_splits(records: Sequence[Record], no_context_predictions: Sequence[str] | None) -> dict[str, list[int]]:
    """Record indices per split: "open_vocabulary" / "other" (see `is_open_vocabulary`; needs the `none` method's
    predictions) and "kind=<answer_kind>" for records that carry an `answer_kind` (e.g. from
    `peft_shine.training.synthetic`)."""
    splits: dict[str, list[int]] = {}
    if no_context_predictions is not None:
        for index, (record, prediction) in enumerate(zip(records, no_context_predictions)):
            name = "open_vocabulary" if is_open_vocabulary(record, prediction) else "other"
            splits.setdefault(name, []).append(index)
    for index, record in enumerate(records):
        if "answer_kind" in record:
            splits.setdefault(f"kind={record['answer_kind']}", []).append(index)
    return splits


def split_scores(
    method: str,
    method_summary: dict[str, Any],
    splits: dict[str, list[int]],
    likelihoods: dict[str, list[dict[str, float]]] | None,
    seed: int,
) -> dict[str, Any]:
    """F1 (mean and CI) of one method on each split, and, when `likelihoods` hold that method's and `none`'s
    per-record likelihoods, its nats per answer token and first-token log-prob with the gains over `none`."""
    items = method_summary["predictions"]
    result = {}
    for name, indices in splits.items():
        entry = {"count": len(indices), "f1": mean_with_ci([items[i]["f1"] for i in indices], seed)}
        copied = [items[i]["copied"] for i in indices if items[i].get("copied") is not None]
        if copied:
            entry["copied"] = mean_with_ci(copied, seed)
        if likelihoods and method in likelihoods and "none" in likelihoods:
            subset = {key: [likelihoods[key][i] for i in indices] for key in (method, "none")}
            entry["likelihood"] = likelihood_gain_summary(subset)[method]
        result[name] = entry
    return result


def gap_closure(results: dict[str, Any]) -> dict[str, Any] | None:
    """(F1(shine) - F1(none)) / (F1(best in-prompt) - F1(none)), the paper's gap closure, against the best of the
    in-prompt methods that ran; None unless shine, none and an in-prompt method ran."""
    methods = results["methods"]
    prompted = {name: methods[name]["f1"]["mean"] for name in methods if name in ICL_TEMPLATES}
    if "shine" not in methods or "none" not in methods or not prompted:
        return None
    best = max(prompted, key=prompted.get)
    none = methods["none"]["f1"]["mean"]
    gap = prompted[best] - none
    value = (methods["shine"]["f1"]["mean"] - none) / gap if gap > 0 else None
    return {"best_in_prompt": best, "closure": value}
