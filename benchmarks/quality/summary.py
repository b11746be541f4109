"""One table of the quality benchmark: per set, no context, both in-prompt prompts, the shipped default and a
candidate adapter (F1 [95% CI], F1 on open-vocabulary questions, copied share of new words), gap closure against the
best in-prompt prompt, and the candidate's paired gain over the default.

    python -m benchmarks.quality.summary --candidate benchmarks/quality/candidate_long1 > table.md

Reads `<set>.json` (none / icl / shine of the shipped default), `icl_short/<set>.json` and `<candidate>/<set>.json`
(every file a `peft-shine eval` result on the same seeded questions, see README.md).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.quality.paired_gain import paired_gain
from peft_shine.evaluation import copied_share, is_open_vocabulary, mean_with_ci

HERE = Path(__file__).resolve().parent
SETS = ("squad_dev_sentence", "squad_dev", "babi_test", "synthetic")


def method_items(path: Path, method: str) -> list[dict] | None:
    """The per-item predictions of `method` in a results file, or None when the file or method is missing."""
    if not path.is_file():
        return None
    return json.loads(path.read_text())["methods"].get(method, {}).get("predictions")


def cell(items: list[dict] | None, indices: list[int] | None = None) -> str:
    """F1 mean [95% CI] of `items` (restricted to `indices`), in points."""
    if items is None:
        return "-"
    values = [items[i]["f1"] for i in (indices if indices is not None else range(len(items)))]
    score = mean_with_ci(values, seed=0)
    return f"{100 * score['mean']:.1f} [{100 * score['ci_low']:.1f}, {100 * score['ci_high']:.1f}]"


def copied(items: list[dict], none: list[dict], records: list[dict]) -> str:
    """Mean share of the gold answers' new words that the predictions contain (`copied_share`), in percent."""
    shares = [copied_share(r, p["prediction"], n["prediction"]) for r, p, n in zip(records, items, none)]
    shares = [s for s in shares if s is not None]
    return f"{100 * sum(shares) / len(shares):.1f}%" if shares else "-"


def row(name: str, candidate: Path) -> str:
    """The table row of one evaluation set."""
    main = HERE / f"{name}.json" if (HERE / f"{name}.json").is_file() else candidate / f"{name}_default.json"
    none, icl, default = (method_items(main, m) for m in ("none", "icl", "shine"))
    icl_short = method_items(HERE / "icl_short" / f"{name}.json", "icl_short") or method_items(main, "icl_short")
    ours = method_items(candidate / f"{name}.json", "shine")
    records = [{"question": p["question"], "answers": p["answers"]} for p in none]
    open_ = [i for i, (r, n) in enumerate(zip(records, none)) if is_open_vocabulary(r, n["prediction"])]
    best = max((m for m in (icl, icl_short) if m), key=lambda m: sum(p["f1"] for p in m))
    mean = lambda items: sum(p["f1"] for p in items) / len(items)  # noqa: E731
    closure = lambda items: (mean(items) - mean(none)) / (mean(best) - mean(none))  # noqa: E731
    gain = paired_gain(
        {"methods": {"shine": {"predictions": ours}}}, "shine", "", {"methods": {"shine": {"predictions": default}}}
    )
    return (
        f"| {name} | {cell(none)} | {cell(icl)} | {cell(icl_short)} | {cell(default)} / open {cell(default, open_)} / "
        f"copied {copied(default, none, records)} | {cell(ours)} / open {cell(ours, open_)} / copied "
        f"{copied(ours, none, records)} | {100 * closure(default):.0f}% / {100 * closure(ours):.0f}% | "
        f"{gain['gain']:+.1f} [{gain['ci_low']:+.1f}, {gain['ci_high']:+.1f}] |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidate", type=Path, required=True, help="folder of the candidate's results files")
    args = parser.parse_args()
    print(
        "| set (500 questions) | no context | in prompt (plain) | in prompt (short answer) | shipped default: F1 / "
        "open-vocabulary F1 / copied | candidate: F1 / open-vocabulary F1 / copied | gap closure default / candidate "
        "| candidate - default (paired) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in SETS:
        if (args.candidate / f"{name}.json").is_file():
            print(row(name, args.candidate))


if __name__ == "__main__":
    main()
