"""The recipe-ablation table and loss curves from `run_arm.sh` outputs.

    python -m benchmarks.recipes.table [--arms benchmarks/recipes/arms] [--reference benchmarks/recipes/reference]

Writes `results.md` (one row per arm: training contexts, final loss, and per evaluation set SHINE's F1, F1 on
open-vocabulary questions (on the invented-facts set: the questions whose answer is a new name, place or number) with
the share of the answers' new words that were copied (`peft_shine.evaluation.copied_share`: no credit for generic
words such as "River") and
the answer log-likelihood gain over no context on those open questions, per token and on the first token) and
`loss_curves.png` next to the arms folder. The reference rows are the base without context and the shipped default.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.common import markdown_table, mean_copied_share

SETS = ("squad_dev_sentence", "squad_dev", "babi_test", "synthetic")
LABELS = {
    "squad_dev_sentence": "SQuAD sentence",
    "squad_dev": "SQuAD paragraph",
    "babi_test": "bAbI",
    "synthetic": "invented",
}


def smoothed_final_loss(history: list[dict], last: int = 10) -> float | None:
    losses = [entry["loss"] for entry in history if "loss" in entry]
    return sum(losses[-last:]) / len(losses[-last:]) if losses else None


def copied_on(results: dict, method: str, indices: list[int], reference: dict | None) -> float | None:
    """Mean `copied_share` of a method's answers on some questions, against the no-context answers of `reference`."""
    baseline = (reference or results)["methods"].get("none", {}).get("predictions")
    if baseline is None:
        return None
    return mean_copied_share(results["methods"][method]["predictions"], baseline, indices)


def set_cells(results: dict | None, method: str, reference: dict | None = None) -> list[str]:
    """F1 | open-vocabulary F1 / copied | LL gain per token / first token of one method on one set."""
    if results is None or method not in results["methods"]:
        return ["-", "-", "-"]
    summary = results["methods"][method]
    # invented facts: the generator's own label ("open": a new name, place or number); elsewhere the rule-based split
    name = "kind=open" if "kind=open" in summary["splits"] else "open_vocabulary"
    open_split = summary["splits"].get(name)
    copied = copied_on(results, method, results["splits"][name], reference) if open_split else None
    gain = (open_split or {}).get("likelihood") or summary.get("likelihood", {})  # on the open questions
    ll = f"{gain['gain_per_token']:+.2f} / {gain['gain_first_token']:+.2f}" if "gain_per_token" in gain else "0 / 0"
    open_cell = f"{100 * open_split['f1']['mean']:.1f}" if open_split else "-"
    if copied is not None:
        open_cell += f" / {100 * copied:.1f}"
    return [f"{100 * summary['f1']['mean']:.1f}", open_cell, ll]


def load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arms", type=Path, default=Path("benchmarks/recipes/arms"))
    parser.add_argument("--reference", type=Path, default=Path("benchmarks/recipes/reference"))
    parser.add_argument("--batch_size", type=int, default=4, help="contexts per training step")
    args = parser.parse_args()
    header = ["arm", "contexts", "final loss"]
    for name in SETS:
        header += [f"{LABELS[name]} F1", "open F1 / copied", "LL gain tok / first"]
    rows = []
    references = {name: load(args.reference / f"{name}.json") for name in SETS}
    for method, label in (("none", "no context"), ("shine", "shipped default (5,200 contexts)")):
        cells = [label, "-", "-"]
        for name in SETS:
            cells += set_cells(references[name], method)
        rows.append(cells)
    curves = {}
    for arm in sorted(p for p in args.arms.iterdir() if p.is_dir()):
        history = load(arm / "log_history.json") or []
        steps = max((entry.get("step", 0) for entry in history), default=0)
        loss = smoothed_final_loss(history)
        cells = [arm.name, str(steps * args.batch_size), f"{loss:.3f}" if loss is not None else "-"]
        for name in SETS:
            cells += set_cells(load(arm / f"{name}.json"), "shine", references[name])
        rows.append(cells)
        curves[arm.name] = [(entry["step"], entry["loss"]) for entry in history if "loss" in entry]
    output = args.arms.parent
    table = markdown_table(header, rows)
    (output / "results.md").write_text(table)
    print(table, end="")
    if curves:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axis = plt.subplots(figsize=(8, 5))
        for name, points in curves.items():
            if points:
                axis.plot(*zip(*points), label=name, linewidth=1)
        axis.set_xlabel("step (4 contexts each)")
        axis.set_ylabel("training loss (answer tokens)")
        axis.legend(fontsize=8)
        figure.tight_layout()
        figure.savefig(output / "loss_curves.png", dpi=120)


if __name__ == "__main__":
    main()
