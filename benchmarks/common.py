"""What the benchmark scripts share: the model under test (`Subject`, loaded as the `peft-shine` CLI loads it), the
device choice, a description of the machine and the model, the common command line options, Markdown tables, plot
axes and the results files.

A script run as `python benchmarks/<name>/run.py` first puts the repository root on `sys.path` (its first lines),
so that `benchmarks.common` imports the same way there as under pytest.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
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
from peft_shine.evaluation import copied_share

PREBUILT = "prebuilt (passed from Python)"


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
