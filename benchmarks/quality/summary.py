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

from benchmarks.common import mean_copied_share
from benchmarks.quality.paired_gain import paired_gain
from peft_shine.evaluation import gap_closure, is_open_vocabulary, mean_with_ci

HERE = Path(__file__).resolve().parent
SETS = ("squad_dev_sentence", "squad_dev", "babi_test", "synthetic")


def load(path: Path) -> dict | None:
    """A results file, or None when it is missing."""
    return json.loads(path.read_text()) if path.is_file() else None


def method_items(results: dict | None, method: str) -> list[dict] | None:
    """The per-item predictions of `method` in `results`, or None when the file or method is missing."""
    return None if results is None else results["methods"].get(method, {}).get("predictions")


def cell(items: list[dict] | None, indices: list[int] | None = None) -> str:
    """F1 mean [95% CI] of `items` (restricted to `indices`), in points."""
    if items is None:
        return "-"
    values = [items[i]["f1"] for i in (indices if indices is not None else range(len(items)))]
    score = mean_with_ci(values, seed=0)
    return f"{100 * score['mean']:.1f} [{100 * score['ci_low']:.1f}, {100 * score['ci_high']:.1f}]"


def copied(items: list[dict], none: list[dict]) -> str:
    """Mean share of the gold answers' new words that the predictions contain (`copied_share`), in percent."""
    share = mean_copied_share(items, none)
    return "-" if share is None else f"{100 * share:.1f}%"


def closure(shine: list[dict], others: dict[str, list[dict] | None]) -> str:
    """`gap_closure` of the items `shine` against `none` and the best in-prompt method among `others`."""
    methods = {
        name: {"f1": {"mean": sum(p["f1"] for p in items) / len(items)}} for name, items in others.items() if items
    }
    methods["shine"] = {"f1": {"mean": sum(p["f1"] for p in shine) / len(shine)}}
    value = (gap_closure({"methods": methods}) or {}).get("closure")
    return "-" if value is None else f"{100 * value:.0f}%"


def row(name: str, candidate: Path) -> str:
    """The table row of one evaluation set."""
    main, theirs = load(HERE / f"{name}.json"), load(candidate / f"{name}.json")
    none, icl, default = (method_items(main, m) for m in ("none", "icl", "shine"))
    icl_short = method_items(load(HERE / "icl_short" / f"{name}.json"), "icl_short") or method_items(main, "icl_short")
    ours = method_items(theirs, "shine")
    open_ = [i for i, item in enumerate(none) if is_open_vocabulary(item, item["prediction"])]
    others = {"none": none, "icl": icl, "icl_short": icl_short}
    gain = paired_gain(theirs, "shine", "", main)
    return (
        f"| {name} | {cell(none)} | {cell(icl)} | {cell(icl_short)} | {cell(default)} / open {cell(default, open_)} / "
        f"copied {copied(default, none)} | {cell(ours)} / open {cell(ours, open_)} / copied "
        f"{copied(ours, none)} | {closure(default, others)} / {closure(ours, others)} | "
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
