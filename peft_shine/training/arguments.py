"""The command-line arguments of SHINE's training scripts (`HfArgumentParser` dataclasses shared by
`examples/pretrain.py` and `examples/instruct.py`). `ShineArguments` is generated from `ShineConfig`'s own fields and
help texts, so the two cannot drift apart."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..config import ShineConfig
from ..sources import Sources, load_dataset_source


@dataclass
class ModelArguments:
    """Which base model, and optionally which SHINE adapter to continue from."""

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Base causal LM (path or Hub id). Default: the embedded SmolLM2-135M-Instruct."}
    )
    adapter_name_or_path: str | None = field(
        default=None, metadata={"help": "Start from this SHINE adapter (e.g. the stage-1 result for stage 2)."}
    )


@dataclass
class DataFileArguments:
    """Training data shared by the example scripts (each script subclasses it with its own options): files, or a
    dataset by name as in transformers' example scripts."""

    train_file: list[str] = field(
        default=None,
        metadata={
            "help": "Training data files; repeatable or comma-separated (see the script's docstring for formats).",
            "action": "extend",
            "nargs": "+",
        },
    )
    eval_file: str | None = field(default=None, metadata={"help": "Evaluation data file (evaluation loss)."})
    dataset_name: str | None = field(
        default=None,
        metadata={"help": "Instead of --train_file: a Hub dataset id or a Dataset.save_to_disk folder."},
    )
    dataset_config_name: str | None = field(
        default=None, metadata={"help": "The configuration of the Hub dataset --dataset_name (if it has several)."}
    )
    train_split: str = field(default="train", metadata={"help": "Split of --dataset_name to train on."})
    eval_split: str | None = field(
        default=None, metadata={"help": "Split of --dataset_name for the evaluation loss (e.g. validation)."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training items."})

    def sources(self) -> tuple[Sources, Sources | None]:
        """(training source, evaluation source or None): the files, or the splits of `--dataset_name` (a
        `datasets.Dataset` each). Raises ValueError unless exactly one of --train_file / --dataset_name is given."""
        if bool(self.train_file) == bool(self.dataset_name):
            given = "both" if self.train_file else "neither"
            raise ValueError(
                f"Give the training data with --train_file FILE(S) or with --dataset_name NAME (a Hub dataset id or a "
                f"Dataset.save_to_disk folder); {given} was given."
            )
        if not self.dataset_name:
            return split_paths(self.train_file), self.eval_file

        def split(name: str):
            return load_dataset_source(self.dataset_name, self.dataset_config_name, name)

        return split(self.train_split), split(self.eval_split) if self.eval_split else self.eval_file


ARGUMENT_TYPES: dict[str, type] = {
    "lora_rank": int,
    "meta_lora_rank": int,
    "m2p_layers": int,
    "target_modules": str,  # comma-separated on the command line
    "num_memory_tokens": int,
    "m2p_hidden_size": int,
    "m2p_num_heads": int,
    "m2p_intermediate_size": int,
    "lora_scale": float,
    "standardize_memory_states": bool,
    "max_context_tokens": int,
    "context_overflow": str,
    "context_position_ids": str,
    "memory_stats_momentum": float,
}
"""The `ShineConfig` fields a training script takes on its command line, with their command-line types."""
STRUCTURE_FIELDS = (
    "lora_rank",
    "meta_lora_rank",
    "m2p_layers",
    "target_modules",
    "num_memory_tokens",
    "m2p_hidden_size",
    "m2p_num_heads",
    "m2p_intermediate_size",
    "lora_scale",
    "standardize_memory_states",
)
"""The fields a saved adapter's weights fix (refused with --adapter_name_or_path); the others change its settings."""


def _argument_help(name: str) -> str:
    """The config field's help, its default for a new adapter, and what it does with --adapter_name_or_path."""
    config_field = ShineConfig.__dataclass_fields__[name]
    default = config_field.default if config_field.default is not dataclasses.MISSING else None
    with_adapter = "refused" if name in STRUCTURE_FIELDS else "changes the loaded adapter's setting"
    listed = " Comma-separated names or 'all-linear'." if name == "target_modules" else ""
    new = f"New adapter: {default!r}; with --adapter_name_or_path: {with_adapter}."
    return f"{config_field.metadata['help']}{listed} {new}"


def _to_config(self) -> ShineConfig:
    """The `ShineConfig` of a new adapter: the fields given, `ShineConfig`'s defaults for the rest."""
    return ShineConfig(**self.given())


def _given(self) -> dict[str, Any]:
    """The fields given on the command line, as `ShineConfig` values (target_modules as a list, or None for all)."""
    given = {name: getattr(self, name) for name in ARGUMENT_TYPES if getattr(self, name) is not None}
    if "target_modules" in given:
        targets = [name.strip() for name in given["target_modules"].split(",") if name.strip()]
        given["target_modules"] = None if targets == ["all-linear"] else targets
    return given


def _apply_to_loaded(self, config: ShineConfig, adapter: str) -> None:
    """Set the given non-structure fields on a loaded adapter's config (checked as a `ShineConfig` checks them);
    ValueError when a structure field is given, since the adapter's weights fix it."""
    given = self.given()
    fixed = [f"--{name}" for name in STRUCTURE_FIELDS if name in given]
    if fixed:
        raise ValueError(
            f"{', '.join(fixed)} cannot change the SHINE adapter {adapter}: its hypernetwork's weights fix them. "
            "Drop them to continue from the adapter, or drop --adapter_name_or_path to start a new one."
        )
    changed = dataclasses.replace(config, **given)  # runs ShineConfig's checks before anything is set
    for name in given:
        setattr(config, name, getattr(changed, name))


ShineArguments = dataclasses.make_dataclass(
    "ShineArguments",
    [
        (name, kind | None, field(default=None, metadata={"help": _argument_help(name)}))
        for name, kind in ARGUMENT_TYPES.items()
    ],
    namespace={"to_config": _to_config, "given": _given, "apply_to_loaded": _apply_to_loaded},
)
ShineArguments.__module__ = __name__
ShineArguments.__doc__ = """`ShineConfig` fields on the command line (`ARGUMENT_TYPES`), each None unless given: a new
adapter takes the given ones and `ShineConfig`'s defaults; with --adapter_name_or_path the non-structure ones change
the loaded adapter's settings and the structure ones (`STRUCTURE_FIELDS`) are refused."""


@dataclass
class ScheduleArguments:
    """Training schedule options of SHINE beyond `TrainingArguments`."""

    freeze_encoder_steps: int = field(
        default=0,
        metadata={
            "help": "Warm start: for the first N steps the context encode pass runs without gradients (the M2P trains "
            "alone on memory states of the frozen encoder; no backward through the base for the context), then the "
            "meta-LoRA and memory embeddings train too."
        },
    )
    max_train_minutes: float | None = field(
        default=None,
        metadata={"help": "Stop training (and save) after this many minutes of wall time, e.g. on a time-boxed GPU."},
    )


def split_paths(values: list[str] | None) -> list[str]:
    """Flatten repeated and comma-separated path arguments: ["a,b", "c"] -> ["a", "b", "c"]."""
    return [part.strip() for value in values or [] for part in value.split(",") if part.strip()]
