"""The long-document benchmark's report: the Markdown tables and the two heatmap plots, from the results
dictionary (`results.json`) alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from benchmarks.common import log2_axis, markdown_table, write_results
from benchmarks.long_documents.documents import POSITIONS


def _percent_ci(summary: dict[str, float] | None) -> str:
    if summary is None:
        return "-"
    low, high = 100 * summary["ci_low"], 100 * summary["ci_high"]
    return f"{100 * summary['mean']:.1f} [{low:.0f}, {high:.0f}] (n={summary['n']})"


def _number(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown_report(results: dict[str, Any]) -> str:
    """The results as Markdown: setup, F1 by position, adaptation cost and the needle table."""
    machine, model, settings = results["machine"], results["model"], results["settings"]
    cells = {(c["method"], c["length"], c["position"]): c for c in results["qa"]["cells"]}
    needles = {(c["method"], c["length"], c["depth"]): c for c in results["needle"]["cells"]}
    qa_rows = []
    for length in settings["lengths"]:
        for method in settings["methods"]:
            overall = cells.get((method, length, "all"))
            qa_rows.append(
                [str(length), method]
                + [_percent_ci((cells.get((method, length, p)) or {}).get("f1")) for p in POSITIONS]
                + [_percent_ci((overall or {}).get("f1")), _percent_ci((overall or {}).get("em"))]
            )
    adaptation_rows = [
        [
            str(row["length"]),
            row["method"],
            str(row["documents"]),
            _number(row["document_tokens_mean"], 0),
            _number(row["adapt_seconds_per_document"], 3),
            _number(row["generate_seconds_per_question"], 3),
            _number(row.get("num_chunks_mean"), 1),
            str(row.get("rank_max", "-")),
            f"{row['compressed_documents']}/{row['documents']}, {_number(row['compression_error_mean'], 3)}"
            if "compressed_documents" in row
            else "-",
            f"{100 * row['icl_truncated_share']:.0f}%, {_number(row['icl_dropped_tokens_mean'], 0)}"
            if "icl_truncated_share" in row
            else "-",
        ]
        for row in results["adaptation"]
    ]
    needle_rows = [
        [str(length), method]
        + [
            _number(100 * needles[(method, length, depth)]["recall"]["mean"], 0)
            if (method, length, depth) in needles
            else "-"
            for depth in settings["depths"]
        ]
        for length in settings["lengths"]
        for method in settings["methods"]
    ]
    chunk_size = settings["max_context_tokens"] or model["max_context_tokens"]
    parts = [
        "# SHINE long-document benchmark\n",
        f"`{machine['command']}`\n",
        f"{machine['device_name']} ({machine['device']}), {machine['cpu_cores']} CPU cores, torch {machine['torch']}. "
        f"Model: {model['base']} + SHINE adapter {model['adapter']} ({model['dtype']}, generated LoRA rank "
        f"{model['lora_rank']} per chunk, chunks of at most {chunk_size} tokens combined by their "
        f"{settings['chunk_combination']}, {model['num_memory_tokens']} memory "
        f"tokens, max_position_embeddings {model['max_position_embeddings']}). Data: {results['data']['squad_dev']} "
        f"({results['data']['paragraphs']} paragraphs). ICL prompt + answer limit: {results['icl_limit']} tokens "
        f"(longer prompts keep the first document tokens that fit). shine_compressed: rank budget "
        f"{settings['max_rank']} (no compression happens when chunks x rank <= budget). Greedy answers of at most "
        f"{settings['max_new_tokens']} tokens; seed {settings['seed']}.\n",
        "## QA F1 by position of the gold paragraph\n",
        "Concatenated SQuAD dev paragraphs; F1 % [95% bootstrap CI] (n questions) by the third of the document that "
        "holds the centre of the question's gold paragraph.\n",
        markdown_table(["length", "method", "first F1", "middle F1", "last F1", "all F1", "all EM"], qa_rows),
        "## Adaptation cost, chunks, rank, truncation\n",
        "Means over the QA and needle documents of each length. Adapt = `absorb_context` (encode every chunk + "
        "hypernetwork + SVD when compressing), synchronised; ICL has none (its cost is in the generation).\n",
        markdown_table(
            [
                "length",
                "method",
                "docs",
                "tokens",
                "adapt s/doc",
                "gen s/question",
                "chunks",
                "rank",
                "compressed, rel. error",
                "ICL truncated, dropped tokens",
            ],
            adaptation_rows,
        ),
        "## Needle in a haystack\n",
        f"Recall % (the 7-digit code appears in the answer), {settings['needle_trials']} trial(s) per cell, by the "
        "depth at which the needle paragraph is inserted.\n",
        markdown_table(["length", "method"] + [f"{100 * depth:.0f}%" for depth in settings["depths"]], needle_rows),
    ]
    return "\n".join(parts)


def _heatmap(axis: Any, values: np.ndarray, rows: list[str], columns: list[str], title: str) -> Any:
    """Values in [0, 1] as a 0-100 heatmap with annotated cells (NaN: not measured)."""
    image = axis.imshow(100 * values, vmin=0, vmax=100, cmap="viridis", aspect="auto")
    axis.set_xticks(range(len(columns)), columns)
    axis.set_yticks(range(len(rows)), rows)
    for (i, j), value in np.ndenumerate(values):
        label = "-" if np.isnan(value) else f"{100 * value:.0f}"
        color = "white" if np.isnan(value) or value < 0.6 else "black"
        axis.text(j, i, label, ha="center", va="center", color=color, fontsize=9)
    axis.set_title(title)
    return image


def plot_f1_by_position(results: dict[str, Any], path: Path) -> None:
    """One F1 heatmap (position x length) per method, and F1 over all positions against length."""
    settings = results["settings"]
    methods, lengths = settings["methods"], settings["lengths"]
    cells = {(c["method"], c["length"], c["position"]): c["f1"] for c in results["qa"]["cells"]}
    figure = Figure(figsize=(3.6 * (len(methods) + 1), 3.6), layout="constrained")
    axes = figure.subplots(1, len(methods) + 1, squeeze=False)[0]
    image = None
    for axis, method in zip(axes, methods):
        values = np.array(
            [[cells[(method, n, p)]["mean"] if (method, n, p) in cells else np.nan for n in lengths] for p in POSITIONS]
        )
        image = _heatmap(axis, values, list(POSITIONS), [str(n) for n in lengths], f"{method}: F1 %")
        axis.set_xlabel("document tokens")
    if image is not None:
        figure.colorbar(image, ax=list(axes[:-1]), shrink=0.8)
    line = axes[-1]
    for method in methods:
        present = [n for n in lengths if (method, n, "all") in cells]
        means = np.array([100 * cells[(method, n, "all")]["mean"] for n in present])
        errors = np.array(
            [
                [100 * (cells[(method, n, "all")]["mean"] - cells[(method, n, "all")]["ci_low"]) for n in present],
                [100 * (cells[(method, n, "all")]["ci_high"] - cells[(method, n, "all")]["mean"]) for n in present],
            ]
        )
        line.errorbar(present, means, yerr=errors, marker="o", capsize=3, label=method)
    log2_axis(line, lengths, "document tokens")
    line.set(ylabel="F1 % (95% CI)", title="All positions", ylim=(-2, 102))
    line.legend(fontsize=8)
    figure.savefig(path, dpi=120)


def plot_needle(results: dict[str, Any], path: Path) -> None:
    """One recall heatmap (depth x length) per method."""
    settings = results["settings"]
    methods, lengths, depths = settings["methods"], settings["lengths"], settings["depths"]
    cells = {(c["method"], c["length"], c["depth"]): c["recall"]["mean"] for c in results["needle"]["cells"]}
    figure = Figure(figsize=(3.6 * len(methods) + 1, 3.6), layout="constrained")
    axes = figure.subplots(1, len(methods), squeeze=False)[0]
    image = None
    for axis, method in zip(axes, methods):
        values = np.array([[cells.get((method, n, d), np.nan) for n in lengths] for d in depths])
        image = _heatmap(
            axis, values, [f"{100 * d:.0f}%" for d in depths], [str(n) for n in lengths], f"{method}: recall %"
        )
        axis.set(xlabel="document tokens", ylabel="needle depth")
    if image is not None:
        figure.colorbar(image, ax=list(axes), shrink=0.8)
    figure.savefig(path, dpi=120)


def write_outputs(results: dict[str, Any], output_dir: Path) -> None:
    """`results.json`, `results.md`, `f1_by_position.png` and `needle.png` in `output_dir`."""
    write_results(results, markdown_report(results), output_dir)
    plot_f1_by_position(results, output_dir / "f1_by_position.png")
    plot_needle(results, output_dir / "needle.png")
