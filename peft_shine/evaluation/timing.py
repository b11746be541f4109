"""Wall-clock timing on a model's device (CUDA synchronised), for the evaluation methods and the benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import torch

T = TypeVar("T")


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter."""
    return next(model.parameters()).device


def timed(device: torch.device, function: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[T, float]:
    """Run `function(*args, **kwargs)`; return its result and the wall-clock seconds it took (CUDA synchronised)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    result = function(*args, **kwargs)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return result, time.perf_counter() - start
