"""The speed benchmark's report: the targets the results are judged against, the Markdown tables and the three
plots, all from the results dictionary (`results.json`) alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from benchmarks.common import log2_axis, markdown_table, write_results

TARGET_ABSORB_TOKENS = 512
TARGET_ABSORB_RATIO = 1.3
TARGET_DECODE_RELATIVE = 0.85
TARGET_SFT_SPEEDUP = 100.0


def check_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The three speed targets, each with its measured value and whether it was met (None: not measured)."""
    ratio = next(
        (
            row["ratio"]
            for row in results["absorb_latency"]["rows"]
            if row["context_tokens_requested"] == TARGET_ABSORB_TOKENS
        ),
        None,
    )
    relative = next(
        row["relative_to_base"] for row in results["decoding"]["rows"] if row["variant"] == "shine_unmerged"
    )
    speedup = results["absorb_vs_sft"]["speedup"]
    return [
        {
            "target": f"absorb / forward latency at {TARGET_ABSORB_TOKENS} context tokens",
            "goal": f"<= {TARGET_ABSORB_RATIO}",
            "value": ratio,
            "met": None if ratio is None else ratio <= TARGET_ABSORB_RATIO,
        },
        {
            "target": "SHINE unmerged decoding tokens/s relative to the base",
            "goal": f">= {TARGET_DECODE_RELATIVE}",
            "value": relative,
            "met": relative >= TARGET_DECODE_RELATIVE,
        },
        {
            "target": "sft adaptation time / absorb time for one context",
            "goal": f">= {TARGET_SFT_SPEEDUP:g}",
            "value": speedup,
            "met": speedup >= TARGET_SFT_SPEEDUP,
        },
    ]


def _ms(seconds: float) -> str:
    return f"{1000 * seconds:.1f}"


def _skipped(section: dict[str, Any]) -> str:
    return "".join(f"\nSkipped {item['context_tokens']} tokens: {item['reason']}.\n" for item in section["skipped"])


def markdown_report(results: dict[str, Any]) -> str:
    """The results as Markdown: the machine, the targets and one table per benchmark."""
    machine, model = results["machine"], results["model"]
    absorb, decoding = results["absorb_latency"], results["decoding"]
    icl, batched, sft = results["icl_vs_shine"], results["batched_absorb"], results["absorb_vs_sft"]
    met = {True: "met", False: "NOT met", None: "not measured"}
    parts = [
        "# SHINE speed benchmark\n",
        f"`{machine['command']}`\n",
        f"{machine['device_name']} ({machine['device']}), {machine['cpu_cores']} CPU cores ({machine['cpu_model']}), "
        f"torch {machine['torch']}, {machine['platform']}. Model: {model['base']} + SHINE adapter {model['adapter']} "
        f"({model['dtype']}, {model['num_memory_tokens']} memory tokens). Median of {results['settings']['repeats']} "
        f"runs after {results['settings']['warmup']} warm-up runs. Memory: {results['memory_metric']}.\n",
        "## Targets\n",
        markdown_table(
            ["target", "goal", "measured", "status"],
            [
                [t["target"], t["goal"], "-" if t["value"] is None else f"{t['value']:.3f}", met[t["met"]]]
                for t in results["targets"]
            ],
        ),
        "## Absorb latency vs a plain forward\n",
        "Absorb = `absorb_context(text)` (tokenisation + encode pass over context and memory tokens + hypernetwork); "
        "forward = the base with SHINE forgotten over the same ids (no grad, `use_cache=False`, last logits only). "
        f"Contexts above {absorb['context_limit']} tokens are absorbed in chunks (one batched encode pass, chunk "
        "LoRAs concatenated along the rank axis); the forward reads them in one pass.\n",
        markdown_table(
            [
                "context tokens",
                "chunks",
                "forward ms",
                "absorb ms",
                "(tokenize ms)",
                "absorb/forward",
                "fwd peak MiB",
                "abs MiB",
            ],
            [
                [
                    str(row["context_tokens"]),
                    str(row["chunks"]),
                    _ms(row["forward_s"]),
                    _ms(row["absorb_s"]),
                    _ms(row["tokenize_s"]),
                    f"{row['ratio']:.2f}",
                    f"{row['forward_peak_mib']:.1f}",
                    f"{row['absorb_peak_mib']:.1f}",
                ]
                for row in absorb["rows"]
            ],
        )
        + _skipped(absorb),
        "## Decoding\n",
        f"Greedy, batch 1, exactly {decoding['new_tokens']} new tokens after a {decoding['prompt_tokens']}-token "
        f"prompt (prefill included). Merged greedy tokens equal unmerged: {decoding['merged_matches_unmerged']}.\n",
        markdown_table(
            ["variant", "seconds", "tokens/s", "relative to base", "peak MiB"],
            [
                [
                    row["variant"],
                    f"{row['seconds']:.3f}",
                    f"{row['tokens_per_s']:.1f}",
                    f"{row['relative_to_base']:.2f}",
                    f"{row['peak_mib']:.1f}",
                ]
                for row in decoding["rows"]
            ],
        ),
        "## ICL vs SHINE\n",
        f"Seconds to answer Q questions ({icl['answer_tokens']} tokens each, one at a time) about one context: ICL "
        "prefills context + question for every question; SHINE absorbs once and asks the questions alone.\n",
        markdown_table(
            ["context tokens", "Q", "ICL s", "SHINE s", "ICL / SHINE", "ICL peak MiB", "SHINE peak MiB"],
            [
                [
                    str(row["context_tokens"]),
                    str(row["questions"]),
                    f"{row['icl_s']:.3f}",
                    f"{row['shine_s']:.3f}",
                    f"{row['speedup']:.2f}",
                    f"{row['icl_peak_mib']:.1f}",
                    f"{row['shine_peak_mib']:.1f}",
                ]
                for row in icl["rows"]
            ],
        )
        + _skipped(icl),
        "## Batched absorb\n",
        f"One `absorb_context` call over a batch of distinct {batched['context_tokens']}-token contexts.\n",
        markdown_table(
            ["batch size", "ms per call", "contexts/s", "peak MiB"],
            [
                [str(row["batch_size"]), _ms(row["seconds"]), f"{row['contexts_per_s']:.1f}", f"{row['peak_mib']:.1f}"]
                for row in batched["rows"]
            ],
        ),
        "## Absorb vs per-context fine-tuning\n",
        f"Adapting to one {sft['context_tokens']}-token context: `absorb_context` against the `sft` baseline of "
        f"`peft-shine eval` (a fresh rank-8 LoRA on the same modules, {sft['sft_epochs']} AdamW steps at lr "
        f"{sft['sft_lr']:g} on the context as language-model text). The answer quality each reaches: "
        "`benchmarks/adaptation/`.\n",
        markdown_table(
            ["absorb s", "sft s", "sft / absorb", "absorb peak MiB", "sft peak MiB"],
            [
                [
                    f"{sft['absorb_s']:.3f}",
                    f"{sft['sft_s']:.3f}",
                    f"{sft['speedup']:.1f}",
                    f"{sft['absorb_peak_mib']:.1f}",
                    f"{sft['sft_peak_mib']:.1f}",
                ]
            ],
        ),
    ]
    return "\n".join(parts)


def plot_absorb_latency(section: dict[str, Any], path: Path) -> None:
    """Latency of absorb and forward (left) and their ratio with the target (right) against context length."""
    figure = Figure(figsize=(10, 4), layout="constrained")
    latency, ratio = figure.subplots(1, 2)
    tokens = [row["context_tokens"] for row in section["rows"]]
    latency.plot(tokens, [1000 * row["forward_s"] for row in section["rows"]], "o-", label="plain forward")
    latency.plot(tokens, [1000 * row["absorb_s"] for row in section["rows"]], "s-", label="absorb_context")
    latency.set(yscale="log", ylabel="ms", title="Latency")
    latency.legend()
    ratio.plot(tokens, [row["ratio"] for row in section["rows"]], "o-", label="absorb / forward")
    ratio.axhline(TARGET_ABSORB_RATIO, color="red", linestyle="--", label=f"target {TARGET_ABSORB_RATIO}x")
    ratio.set(ylabel="ratio", title="Absorb overhead")
    ratio.legend()
    for axis in (latency, ratio):
        log2_axis(axis, tokens, "context tokens")
    figure.savefig(path, dpi=120)


def plot_icl_vs_shine(section: dict[str, Any], path: Path) -> None:
    """Seconds to answer Q questions against context length (one panel per Q), and peak memory at the largest Q."""
    counts = sorted({row["questions"] for row in section["rows"]})
    figure = Figure(figsize=(4 * (len(counts) + 1), 4), layout="constrained")
    axes = figure.subplots(1, len(counts) + 1, squeeze=False)[0]
    for axis, count in zip(axes, counts):
        rows = [row for row in section["rows"] if row["questions"] == count]
        tokens = [row["context_tokens"] for row in rows]
        axis.plot(tokens, [row["icl_s"] for row in rows], "o-", label="ICL (context in prompt)")
        axis.plot(tokens, [row["shine_s"] for row in rows], "s-", label="SHINE (absorb once)")
        axis.set(yscale="log", ylabel="seconds", title=f"Q = {count}")
        log2_axis(axis, tokens, "context tokens")
        axis.legend()
    rows = [row for row in section["rows"] if counts and row["questions"] == counts[-1]]
    tokens = [row["context_tokens"] for row in rows]
    memory = axes[-1]
    memory.plot(tokens, [row["icl_peak_mib"] for row in rows], "o-", label="ICL")
    memory.plot(tokens, [row["shine_peak_mib"] for row in rows], "s-", label="SHINE")
    memory.set(ylabel="peak MiB", title="Peak memory (largest Q)")
    log2_axis(memory, tokens, "context tokens")
    memory.legend()
    figure.savefig(path, dpi=120)


def plot_batched_absorb(section: dict[str, Any], path: Path) -> None:
    """Absorb throughput (contexts/s) against batch size."""
    figure = Figure(figsize=(5, 4), layout="constrained")
    axis = figure.subplots()
    sizes = [row["batch_size"] for row in section["rows"]]
    axis.plot(sizes, [row["contexts_per_s"] for row in section["rows"]], "o-")
    axis.set(ylabel="contexts / s", title=f"Batched absorb, {section['context_tokens']}-token contexts")
    log2_axis(axis, sizes, "batch size")
    figure.savefig(path, dpi=120)


def write_outputs(results: dict[str, Any], output_dir: Path) -> None:
    """`results.json`, `results.md` and the three PNG plots in `output_dir`."""
    write_results(results, markdown_report(results), output_dir)
    plot_absorb_latency(results["absorb_latency"], output_dir / "absorb_latency.png")
    plot_icl_vs_shine(results["icl_vs_shine"], output_dir / "icl_vs_shine.png")
    plot_batched_absorb(results["batched_absorb"], output_dir / "batched_absorb.png")
