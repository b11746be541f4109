"""Scores and reports: per-record F1 / EM (and option accuracy), a method's summary with bootstrap intervals and
timing, the Markdown table and the JSON + Markdown files."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .methods import MethodRun
from .metrics import exact_match, f1, mean_with_ci, option_accuracy
from .records import Record


def score_predictions(records: Sequence[Record], predictions: Sequence[str]) -> list[dict[str, Any]]:
    """Per-record F1 and EM (and `accuracy` for records with `options`) of the predictions."""
    scored = []
    for index, (record, prediction) in enumerate(zip(records, predictions)):
        item = {
            "id": record.get("id", index),
            "question": record["question"],
            "prediction": prediction,
            "answers": list(record["answers"]),
            "f1": f1(prediction, record["answers"]),
            "em": exact_match(prediction, record["answers"]),
        }
        if "options" in record:
            item["accuracy"] = option_accuracy(prediction, record["options"], record["answers"])
        scored.append(item)
    return scored


def summarize_run(records: Sequence[Record], run: MethodRun, seed: int) -> dict[str, Any]:
    """Mean and bootstrap CI of F1 / EM (and option accuracy when records have options), timing and predictions."""
    scored = score_predictions(records, run.predictions)
    summary: dict[str, Any] = {
        "f1": mean_with_ci([item["f1"] for item in scored], seed),
        "em": mean_with_ci([item["em"] for item in scored], seed),
    }
    accuracies = [item["accuracy"] for item in scored if "accuracy" in item]
    if accuracies:
        summary["accuracy"] = mean_with_ci(accuracies, seed)
    summary["adapt_seconds_per_context"] = run.adapt_seconds / run.num_contexts if run.num_contexts else 0.0
    summary["generate_seconds_per_question"] = run.generate_seconds / len(records)
    summary["predictions"] = scored
    return summary


def _percent(summary: dict[str, float]) -> str:
    return f"{100 * summary['mean']:.1f}"


def _with_ci(score: dict[str, float]) -> str:
    return f"{_percent(score)} [{100 * score['ci_low']:.1f}, {100 * score['ci_high']:.1f}]"


def markdown_table(results: dict[str, Any]) -> str:
    """A Markdown table of the results: method | F1 (95% CI) | EM | [accuracy |] F1 per split | [likelihood gain
    per token / first token |] adapt s/context | gen s/question, then the gap closure when it is defined."""
    methods = results["methods"]
    splits = results.get("splits", {})
    with_accuracy = any("accuracy" in summary for summary in methods.values())
    with_likelihood = any("likelihood" in summary for summary in methods.values())
    header = ["method", "F1 (95% CI)", "EM"] + (["accuracy"] if with_accuracy else [])
    header += [f"F1 {name} (n={len(indices)})" for name, indices in splits.items()]
    header += ["LL gain nats/token", "LL gain first token"] if with_likelihood else []
    header += ["adapt s/context", "gen s/question"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, summary in methods.items():
        cells = [name, _with_ci(summary["f1"]), _percent(summary["em"])]
        if with_accuracy:
            cells.append(_percent(summary["accuracy"]) if "accuracy" in summary else "-")
        cells += [_with_ci(summary["splits"][split]["f1"]) for split in splits]
        if with_likelihood:
            gain = summary.get("likelihood", {})
            cells += [f"{gain[key]:+.3f}" if key in gain else "-" for key in ("gain_per_token", "gain_first_token")]
        cells += [f"{summary['adapt_seconds_per_context']:.4f}", f"{summary['generate_seconds_per_question']:.4f}"]
        lines.append("| " + " | ".join(cells) + " |")
    closure = results.get("gap_closure")
    if closure and closure["closure"] is not None:
        lines.append(
            f"\nGap closure (shine - none) / ({closure['best_in_prompt']} - none): {100 * closure['closure']:.1f}%"
        )
    return "\n".join(lines) + "\n"


def save_results(results: dict[str, Any], path: str | Path) -> None:
    """Write the results as JSON (indent 2) to `path` and as a Markdown table to the same path with suffix `.md`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    path.with_suffix(".md").write_text(markdown_table(results), encoding="utf-8")
