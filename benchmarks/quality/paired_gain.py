"""SHINE's F1 gain over another method on the same questions, as a paired bootstrap interval.

    python benchmarks/quality/paired_gain.py benchmarks/quality/squad_dev_sentence.json [--baseline none]
    python benchmarks/quality/paired_gain.py new/squad_dev.json --against old/squad_dev.json   # new vs old adapter

Reads a `peft-shine eval` results JSON holding both methods, pairs their per-item F1 by position (the harness keeps
the record order for every method) and prints the mean per-item difference with its 95% percentile-bootstrap
interval (`peft_shine.evaluation.bootstrap_ci`, 2000 resamples) and how many items each method wins. With
`--against`, the method's F1 in each results file is paired with the same method's F1 in the other file (two adapters
evaluated on the same records): the test a new default must pass to replace the shipped one.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from peft_shine.evaluation import bootstrap_ci


def paired_gain(results: dict, method: str, baseline: str, other: dict | None = None) -> dict[str, float]:
    """Mean and 95% interval of F1(method) - F1(baseline) per item, in F1 points, with the items each one wins.
    With `other` (a second results file), the baseline is `method` as scored in `other`."""
    ours = results["methods"][method]["predictions"]
    theirs = (other or results)["methods"][method if other is not None else baseline]["predictions"]
    if [p["id"] for p in ours] != [p["id"] for p in theirs]:
        raise ValueError(f"{method} and {baseline} were not scored on the same records in the same order.")
    differences = [a["f1"] - b["f1"] for a, b in zip(ours, theirs)]
    low, high = bootstrap_ci(differences, num_samples=2000)
    return {
        "gain": 100 * sum(differences) / len(differences),
        "ci_low": 100 * low,
        "ci_high": 100 * high,
        "wins": sum(d > 0 for d in differences),
        "losses": sum(d < 0 for d in differences),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", type=Path, help="peft-shine eval results JSON files")
    parser.add_argument("--method", default="shine")
    parser.add_argument("--baseline", default="none")
    parser.add_argument("--against", nargs="+", type=Path, help="results files of another adapter, one per results")
    args = parser.parse_args()
    if args.against and len(args.against) != len(args.results):
        parser.error("--against needs one results file per results file")
    for index, path in enumerate(args.results):
        other = json.loads(args.against[index].read_text()) if args.against else None
        gain = paired_gain(json.loads(path.read_text()), args.method, args.baseline, other)
        baseline = f"{args.method} of {args.against[index]}" if other else args.baseline
        print(
            f"{path.stem}: {args.method} - {baseline} = {gain['gain']:+.1f} F1 "
            f"[{gain['ci_low']:+.1f}, {gain['ci_high']:+.1f}], wins {gain['wins']}, losses {gain['losses']}"
        )


if __name__ == "__main__":
    main()
