"""Speed and memory benchmark of SHINE against the plain base model.

    python -m benchmarks.speed.run --device auto --output_dir runs/speed
    python -m benchmarks.speed.run --quick --device cpu --output_dir /tmp/speed   # tiny smoke configuration

Measures (warm-up runs, then the median of `--repeats` device-synchronised runs; peak memory over the measured runs):
1. `absorb_context` latency against a plain no-grad forward of the base over the same context tokens;
2. greedy decoding tokens/s of the base, SHINE with an absorbed LoRA (unmerged) and the exported LoRA merged;
3. time and memory to answer Q questions about a growing context: in the prompt (ICL) or absorbed once (SHINE);
4. batched absorb throughput (contexts/s).

Writes `results.json`, `results.md` and `absorb_latency.png`, `icl_vs_shine.png`, `batched_absorb.png` to
`--output_dir`. Without `--base`/`--adapter` the embedded default (SmolLM2-135M-Instruct + the shipped hypernetwork)
is used.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from benchmarks.common import Subject, add_run_arguments, machine_info, memory_metric, subject_on_device
from benchmarks.speed.benches import (
    bench_absorb_latency,
    bench_absorb_vs_sft,
    bench_batched_absorb,
    bench_decoding,
    bench_icl_vs_shine,
)
from benchmarks.speed.inputs import QUICK, Settings
from benchmarks.speed.report import check_targets, markdown_report, write_outputs


def build_parser() -> argparse.ArgumentParser:
    """The command line options (the model a test passes to `main` has no option)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(
        parser,
        "runs/speed",
        "where results and plots go (default runs/speed)",
        "tiny smoke configuration (seconds, numbers meaningless)",
    )
    parser.add_argument("--warmup", type=int, help="unmeasured runs before each measurement (default 2)")
    parser.add_argument("--repeats", type=int, help="measured runs; the median is reported (default 5)")
    return parser


def main(argv: Sequence[str] | None = None, *, subject: Subject | None = None) -> dict[str, Any]:
    """Run every benchmark and write the outputs; returns the results. `subject` (for tests) replaces the model that
    `--base`/`--adapter` would load."""
    args = build_parser().parse_args(argv)
    settings = QUICK if args.quick else Settings()
    overrides = {name: getattr(args, name) for name in ("warmup", "repeats") if getattr(args, name) is not None}
    settings = replace(settings, **overrides)
    if settings.warmup < 0 or settings.repeats < 1:
        raise SystemExit("error: --warmup must be >= 0 and --repeats >= 1")
    subject, device, model = subject_on_device(args, subject)
    results: dict[str, Any] = {
        "machine": machine_info(device),
        "model": model,
        "settings": {**asdict(settings), "quick": args.quick},
        "memory_metric": memory_metric(device),
    }
    benchmarks = {
        "absorb_latency": bench_absorb_latency,
        "decoding": bench_decoding,
        "icl_vs_shine": bench_icl_vs_shine,
        "batched_absorb": bench_batched_absorb,
        "absorb_vs_sft": bench_absorb_vs_sft,
    }
    for name, benchmark in benchmarks.items():
        print(f"[speed] {name} ...", file=sys.stderr, flush=True)
        results[name] = benchmark(subject, settings, device)
    results["targets"] = check_targets(results)
    output_dir = Path(args.output_dir)
    write_outputs(results, output_dir)
    print(markdown_report(results))
    print(f"[speed] wrote {output_dir}/results.json, results.md and 3 plots", file=sys.stderr)
    return results


if __name__ == "__main__":
    main()
