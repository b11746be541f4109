"""`AbsorbOptions`: what is chosen per absorb (one `absorb_context` call, an `absorb_corpus` run, a CLI command, a web
request), kept apart from the saved `ShineConfig` the way PEFT keeps `LoraRuntimeConfig` apart from `LoraConfig`.
The config's fields of the same names (`config.ABSORB_FIELDS`) are only the defaults; no caller changes a config to
get a per-call behaviour."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .config import ABSORB_FIELDS, check_absorb_values

FROM_CONFIG = "config"
"""The value of a field that takes the adapter's saved default."""


@dataclass(frozen=True)
class AbsorbOptions:
    """Per-absorb choices; every field defaults to `FROM_CONFIG` (the `ShineConfig` field of the same name).

    max_context_tokens: longest chunk encoded in one pass.
    context_overflow: a longer context is "chunk"ed, "truncate"d (with a warning) or an "error".
    chunk_overlap_tokens: tokens shared by consecutive chunks.
    chunk_combination: chunk (and composed document) deltas combine by their "mean" or "sum".
    chunk_batch_size: chunks encoded per forward pass.
    max_lora_rank: compress a larger adapter to this rank by a truncated SVD; None keeps the full rank.
    """

    max_context_tokens: int | str = FROM_CONFIG
    context_overflow: str = FROM_CONFIG
    chunk_overlap_tokens: int | str = FROM_CONFIG
    chunk_combination: str = FROM_CONFIG
    chunk_batch_size: int | str = FROM_CONFIG
    max_lora_rank: int | None | str = FROM_CONFIG

    def with_overrides(self, **overrides: Any) -> AbsorbOptions:
        """A copy with `overrides` (field names) applied; None means `FROM_CONFIG` except for `max_lora_rank`, where it
        means full rank. TypeError names an unknown option."""
        unknown = sorted(set(overrides) - set(ABSORB_FIELDS))
        if unknown:
            raise TypeError(f"Unknown absorb option(s) {unknown}; the options are {list(ABSORB_FIELDS)}.")
        given = {k: FROM_CONFIG if v is None and k != "max_lora_rank" else v for k, v in overrides.items()}
        return dataclasses.replace(self, **given)

    def resolved(self, defaults: Any) -> AbsorbOptions:
        """Every `FROM_CONFIG` field taken from `defaults` (the adapter's `ShineConfig`), all values checked."""
        values = {name: getattr(self, name) for name in ABSORB_FIELDS}
        values = {name: getattr(defaults, name) if v == FROM_CONFIG else v for name, v in values.items()}
        check_absorb_values(values, "absorb option ")
        return AbsorbOptions(**values)
