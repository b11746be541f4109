"""What the benchmark scripts share: the model under test (`Subject`, loaded as the `peft-shine` CLI loads it), the
device choice, time and peak memory of a function (`measure`, `PeakMemory`), a description of the machine and the
model, the common command line options, Markdown tables, plot axes and the results files.

The scripts run from the repository root as modules (`python -m benchmarks.<name>.run`), so `benchmarks.common`
imports the same way there as under pytest.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import re
import resource
import shlex
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import peft
import torch
import transformers
from peft import PeftModel
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from peft_shine.defaults import load_base, load_shine
from peft_shine.evaluation import copied_share, timed

PREBUILT = "prebuilt (passed from Python)"
MIB = 2**20


@dataclass
class Subject:
    """The SHINE model under test, its tokenizer, and a loader of a fresh plain base (for the merged variant)."""

    model: PeftModel
    tokenizer: PreTrainedTokenizerBase
    base_factory: Callable[[], PreTrainedModel]


def load_subject(base: str | None, adapter: str | None) -> Subject:
    """The SHINE model as the `peft-shine` CLI loads it, with a loader of fresh copies of the same base."""
    model, tokenizer = load_shine(base, adapter)
    return Subject(model, tokenizer, lambda: load_base(base)[0])


def resolve_device(name: str) -> torch.device:
    """`cpu`, `cuda`, or `auto` (CUDA when available)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda, but torch sees no CUDA device")
    return torch.device(name)


def add_run_arguments(parser: argparse.ArgumentParser, output_dir: str, output_help: str, quick_help: str) -> None:
    """The options every model benchmark has, in this order: --device, --output_dir (default `output_dir`), --quick,
    --base, --adapter."""
    parser.add_argument("--device", choices=["cpu", "cuda", "auto"], default="auto", help="auto: CUDA when available")
    parser.add_argument("--output_dir", default=output_dir, help=output_help)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--base", help="base model path or Hub id (default: embedded SmolLM2-135M-Instruct)")
    parser.add_argument("--adapter", help="SHINE adapter (default: the shipped one)")


def subject_on_device(args: argparse.Namespace, subject: Subject | None) -> tuple[Subject, torch.device, dict]:
    """The model under test on `--device`, in eval mode, and its description (`model_info`): `subject` when a test
    passes one, else the model `--base` / `--adapter` name."""
    device = resolve_device(args.device)
    if subject is None:
        subject = load_subject(args.base, args.adapter)
        base, adapter = args.base or "default", args.adapter or "default"
    else:
        base = adapter = PREBUILT
    subject.model.to(device).eval()
    return subject, device, model_info(subject, base, adapter)


def _proc_status_bytes(field: str) -> int:
    """A `kB` field of /proc/self/status (VmRSS, VmHWM) in bytes."""
    match = re.search(rf"^{field}:\s*(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    if match is None:
        raise OSError(f"/proc/self/status has no {field}")
    return int(match.group(1)) * 1024


def _max_rss_bytes() -> int:
    """The process's peak RSS from getrusage (kilobytes on Linux, bytes on macOS)."""
    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return value if sys.platform == "darwin" else value * 1024


class PeakMemory:
    """`with PeakMemory(device) as peak:` -> `peak.mib`, the most memory the block used above what was in use when it
    began; `peak.metric` says how it was measured.

    CUDA: `torch.cuda.max_memory_allocated` after `reset_peak_memory_stats`, minus `memory_allocated` at the start
    (tensors only, not the caching allocator's reserve). CPU: process RSS, so allocator caching and other threads
    count; on Linux the kernel's peak-RSS counter is reset through /proc/self/clear_refs, elsewhere only the growth of
    the lifetime peak (`ru_maxrss`) is seen.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.mib = 0.0
        self.metric = ""
        self._start = 0
        self._read_peak: Callable[[], int] = _max_rss_bytes

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._read_peak = functools.partial(torch.cuda.max_memory_allocated, self.device)
            self.metric = "CUDA: torch.cuda.max_memory_allocated during the runs minus memory_allocated before (MiB)"
            return self
        try:
            Path("/proc/self/clear_refs").write_text("5")  # Linux >= 4.0: peak RSS (VmHWM) := current RSS
            self._start = _proc_status_bytes("VmRSS")
            self._read_peak = functools.partial(_proc_status_bytes, "VmHWM")
            self.metric = "CPU: peak RSS during the runs minus RSS before (VmHWM reset via /proc/self/clear_refs; MiB)"
        except OSError:
            self._start = _max_rss_bytes()
            self.metric = (
                "CPU: growth of the process's lifetime peak RSS (getrusage ru_maxrss; 0 if below an earlier peak)"
            )
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.mib = max(self._read_peak() - self._start, 0) / MIB


def memory_metric(device: torch.device) -> str:
    """How `PeakMemory` measures on `device`."""
    with PeakMemory(device) as probe:
        pass
    return probe.metric


@dataclass
class Measurement:
    """Median and all measured seconds of a function, its peak extra memory over the measured runs and what its last
    run returned."""

    median_s: float
    times_s: list[float]
    peak_mib: float
    result: Any


@torch.no_grad()
def measure(device: torch.device, function: Callable[[], Any], repeats: int, warmup: int = 0) -> Measurement:
    """`warmup` unmeasured runs, then `repeats` timed runs (CUDA synchronised) under `PeakMemory`."""
    for _ in range(warmup):
        function()
    times, result = [], None
    with PeakMemory(device) as peak:
        for _ in range(repeats):
            result = None  # not held while the next run is measured
            result, seconds = timed(device, function)
            times.append(seconds)
    return Measurement(statistics.median(times), times, peak.mib, result)


def max_positions(model: PeftModel) -> int | None:
    """The base's `max_position_embeddings` (None when its config has none)."""
    return getattr(model.get_base_model().config.get_text_config(), "max_position_embeddings", None)


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (else `platform.processor()`)."""
    try:
        match = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
    except OSError:
        match = None
    return match.group(1).strip() if match else platform.processor() or "unknown"


def machine_info(device: torch.device) -> dict[str, Any]:
    """Platform, CPU, cores, library versions, the device's name and the exact command line."""
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model(),
        "command": shlex.join(sys.orig_argv),
    }


def model_info(subject: Subject, base: str, adapter: str) -> dict[str, Any]:
    """The model under test (`base` and `adapter` as requested): sizes, dtype and the SHINE settings that drive its
    cost."""
    model = subject.model
    config = model.base_model.shine_config
    return {
        "base": base,
        "adapter": adapter,
        "base_name_or_path": getattr(model.get_base_model(), "name_or_path", None),
        "dtype": str(next(model.parameters()).dtype),
        "hypernetwork_parameters": sum(p.numel() for p in model.base_model.hypernetwork.parameters()),
        "total_parameters": sum(p.numel() for p in model.parameters()),
        "target_modules": config.target_modules,
        "lora_rank": config.lora_rank,
        "num_memory_tokens": config.num_memory_tokens,
        "max_context_tokens": config.max_context_tokens,
        "max_position_embeddings": max_positions(model),
    }


def mean_copied_share(items: list[dict], baseline: list[dict], indices: list[int] | None = None) -> float | None:
    """Mean `copied_share` of prediction items (each with question, answers and prediction, as a results file holds
    them) against the no-context items `baseline` of the same records, over `indices` (default: all); None when no
    gold answer there has a new word. Recomputed rather than read, because older results files lack `copied`."""
    chosen = range(len(items)) if indices is None else indices
    shares = [copied_share(items[i], items[i]["prediction"], baseline[i]["prediction"]) for i in chosen]
    shares = [share for share in shares if share is not None]
    return sum(shares) / len(shares) if shares else None


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table, one line per row, ending with a newline."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows]) + "\n"


def log2_axis(axis: Any, values: list[int], label: str) -> None:
    """A base-2 logarithmic x axis ticked at the measured `values`."""
    axis.set_xscale("log", base=2)
    axis.set_xticks(values, [str(value) for value in values])
    axis.set_xlabel(label)


def write_results(results: dict[str, Any], markdown: str, output_dir: Path) -> None:
    """`results.json` (indent 2) and `results.md` in `output_dir`, created if needed."""
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (output_dir / "results.md").write_text(markdown, encoding="utf-8")
