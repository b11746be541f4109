"""What the `peft-shine` commands share: one-line errors, reading text files, devices, loading models, absorb options
from the command line."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
from peft import PeftConfig

from ..defaults import load_base, load_shine
from ..options import AbsorbOptions

LOAD_ERRORS = (OSError, ValueError, KeyError, ImportError)
"""What loading a base or an adapter raises for a bad path, id or file (OSError, PEFT's ValueError, a KeyError for an
unregistered adapter type, DefaultModelNotInstalledError)."""


def fail(message: str) -> SystemExit:
    """The exit of a command with a one-line `error: ...` message."""
    return SystemExit(f"error: {' '.join(message.split())}")


def read_text_file(path: str) -> str:
    """A UTF-8 text file's content; clear errors for missing, non-UTF-8 or empty files."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise fail(f"{path}: no such file") from None
    except UnicodeDecodeError as error:
        raise fail(f"{path} is not UTF-8 text ({error.reason} at byte {error.start}); convert it first") from None
    if not text.strip():
        raise fail(f"{path} is empty; there is nothing to absorb")
    return text


def resolve_device(name: str) -> torch.device:
    """`--device`: "auto" is the GPU of this process (`cuda:LOCAL_RANK` under torchrun) when there is one, else CPU."""
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    try:
        return torch.device(name)
    except RuntimeError as error:
        raise fail(f"--device {name!r} is not a device ({error}); use auto, cpu, cuda or cuda:N") from None


def adapter_peft_type(adapter: str) -> str:
    """The `peft_type` of the adapter at `adapter` (folder or Hub id); a one-line error when there is none."""
    try:
        return str(PeftConfig.from_pretrained(adapter).peft_type).removeprefix("PeftType.")
    except LOAD_ERRORS as error:
        raise fail(f"--adapter {adapter}: not a PEFT adapter folder or Hub repo ({error})") from None


def load_shine_model(args: argparse.Namespace):
    """The SHINE model of `--base` / `--adapter` on `--device`, and its tokenizer; one-line errors for bad paths."""
    device = resolve_device(args.device)
    kind = adapter_peft_type(args.adapter) if args.adapter else "SHINE"
    if kind != "SHINE":
        raise fail(f"--adapter {args.adapter} is a plain {kind} adapter, not a SHINE hypernetwork")
    try:
        model, tokenizer = load_shine(args.base, args.adapter)
    except LOAD_ERRORS as error:
        base, adapter = args.base or "(default)", args.adapter or "(default)"
        raise fail(f"cannot load base {base} with adapter {adapter}: {error}") from None
    return model.to(device), tokenizer


def load_base_model(args: argparse.Namespace):
    """The base model of `--base` on `--device`, and its tokenizer; a one-line error for a bad path or id."""
    device = resolve_device(args.device)
    try:
        base, tokenizer = load_base(args.base)
    except LOAD_ERRORS as error:
        raise fail(f"cannot load base {args.base}: {error}") from None
    return base.to(device), tokenizer


def absorb_options(args: argparse.Namespace) -> AbsorbOptions:
    """The absorb choices of the command line (`--chunk-combination`, `--max-rank`); the rest from the adapter."""
    rank = {} if args.max_rank is None else {"max_lora_rank": args.max_rank}
    return AbsorbOptions().with_overrides(chunk_combination=args.chunk_combination, **rank)
