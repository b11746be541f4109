"""Glue for training SHINE with the stock `transformers.Trainer` (no training loop here): argument dataclasses shared
by `examples/pretrain.py` and `examples/instruct.py`, model construction, and a callback that logs skipped batches
and drives the context-length curriculum."""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from peft import PeftModel
from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from .config import ShineConfig, check_choice
from .defaults import shine_model
from .objective import ShineLoss
from .sources import Sources, load_dataset_source

logger = logging.getLogger(__name__)


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


NEW_ADAPTER_DEFAULTS = {"lora_rank": 8, "meta_lora_rank": 16, "m2p_layers": 4, "max_context_tokens": 1024}
STRUCTURE_FIELDS = (
    "lora_rank",
    "meta_lora_rank",
    "m2p_layers",
    "target_modules",
    "num_memory_tokens",
    "standardize_memory_states",
)
"""ShineArguments fixed by a saved adapter's hypernetwork (they set the shapes of its weights)."""


@dataclass
class ShineArguments:
    """`ShineConfig` fields exposed on the command line. A new adapter takes them (None: the default in the help);
    with `--adapter_name_or_path`, `max_context_tokens` and `context_overflow` change the loaded adapter's settings
    and the structure fields are refused (the adapter's weights fix them)."""

    lora_rank: int | None = field(default=None, metadata={"help": "Rank of the generated LoRA (new adapter: 8)."})
    meta_lora_rank: int | None = field(
        default=None, metadata={"help": "Rank of the meta-LoRA used while encoding (new adapter: 16)."}
    )
    m2p_layers: int | None = field(default=None, metadata={"help": "M2P transformer blocks, even (new adapter: 4)."})
    max_context_tokens: int | None = field(
        default=None,
        metadata={"help": "Longest context encoded in one pass (new adapter: 1024; default with an adapter: its own)."},
    )
    context_overflow: str | None = field(
        default=None,
        metadata={
            "help": "Longer contexts: 'truncate' (keep the start, with a warning), 'error', or 'chunk' (absorb splits "
            "them; training raises). New adapter: 'chunk'; with an adapter: its own."
        },
    )
    target_modules: str | None = field(
        default=None,
        metadata={"help": "Comma-separated module names (e.g. 'down_proj') or 'all-linear'; default all linear."},
    )
    num_memory_tokens: int | None = field(default=None, metadata={"help": "Memory slots; default ceil(r*D/H)."})
    standardize_memory_states: bool | None = field(
        default=None,
        metadata={"help": "Standardise memory states before the M2P (new adapter: true); false = the reference (raw)."},
    )
    context_position_ids: str | None = field(
        default=None,
        metadata={
            "help": "Encode-pass position ids: 'mask' (cumsum; new adapter) or 'arange' (the reference); with an "
            "adapter: its own unless given."
        },
    )

    def to_config(self) -> ShineConfig:
        """The `ShineConfig` of a new adapter: the fields given, the defaults of `NEW_ADAPTER_DEFAULTS` otherwise."""
        targets = [name.strip() for name in self.target_modules.split(",")] if self.target_modules else None
        targets = None if targets == ["all-linear"] else targets
        given = {name: getattr(self, name) for name in NEW_ADAPTER_DEFAULTS if getattr(self, name) is not None}
        overflow = {"context_overflow": self.context_overflow} if self.context_overflow else {}
        return ShineConfig(
            **{**NEW_ADAPTER_DEFAULTS, **given, **overflow},
            target_modules=targets,
            num_memory_tokens=self.num_memory_tokens,
            standardize_memory_states=self.standardize_memory_states is not False,
            context_position_ids=self.context_position_ids or "mask",
        )

    def apply_to_loaded(self, config: ShineConfig, adapter: str) -> None:
        """Set `max_context_tokens` / `context_overflow` / `context_position_ids` (when given) on a loaded adapter's
        config; ValueError when a structure field is given, since the adapter's weights fix it."""
        fixed = [f"--{name}" for name in STRUCTURE_FIELDS if getattr(self, name) is not None]
        if fixed:
            raise ValueError(
                f"{', '.join(fixed)} cannot change the SHINE adapter {adapter}: its hypernetwork's weights fix them. "
                "Drop them to continue from the adapter, or drop --adapter_name_or_path to start a new one."
            )
        if self.max_context_tokens is not None:
            config.max_context_tokens = self.max_context_tokens
        if self.context_overflow is not None:
            check_choice("context_overflow", self.context_overflow, "--")
            config.context_overflow = self.context_overflow
        if self.context_position_ids is not None:
            check_choice("context_position_ids", self.context_position_ids, "--")
            config.context_position_ids = self.context_position_ids


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


def build_shine_model(
    base: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    shine_args: ShineArguments,
    adapter_name_or_path: str | None = None,
) -> PeftModel:
    """A trainable SHINE model: a new adapter from `shine_args`, or the given adapter loaded as trainable with the
    context options of `shine_args` applied (`ShineArguments.apply_to_loaded`)."""
    if not adapter_name_or_path:
        return shine_model(base, tokenizer, config=shine_args.to_config(), is_trainable=True)
    model = shine_model(base, tokenizer, adapter_name_or_path, is_trainable=True)
    shine_args.apply_to_loaded(model.base_model.shine_config, adapter_name_or_path)
    return model


def check_context_lengths(token_counts: Sequence[int], config: ShineConfig, what: str = "training") -> None:
    """Check, when the data is loaded, the longest evidence of each item (`token_counts`, see the datasets'
    `evidence_token_counts`) against `config.max_context_tokens`: a training context is encoded in one pass, so
    longer ones raise ValueError (policy "error" or "chunk") or, under "truncate", warn once with their count."""
    limit = config.max_context_tokens
    too_long = [i for i, count in enumerate(token_counts) if count > limit]
    if not too_long:
        return
    longest = max(too_long, key=token_counts.__getitem__)
    found = (
        f"{len(too_long)} of {len(token_counts)} {what} items have a context longer than max_context_tokens={limit} "
        f"(the longest: item {longest}, {token_counts[longest]} tokens)"
    )
    if config.context_overflow == "truncate":
        warnings.warn(f"{found}; context_overflow='truncate' keeps their first {limit} tokens.", stacklevel=2)
        return
    raise ValueError(
        f"{found}, and a training context is encoded in one pass (context_overflow={config.context_overflow!r}). "
        f"Raise --max_context_tokens to at least {token_counts[longest]}, filter or split such records, or set "
        "--context_overflow truncate to keep only their start; both options also apply with --adapter_name_or_path."
    )


class ShineTrainingCallback(TrainerCallback):
    """Logs the batches the `ShineLoss` skipped (no answer tokens, non-finite loss), advances the curriculum and ends
    the frozen-encoder warm start after `freeze_encoder_steps` steps (see `ScheduleArguments`).

    The curriculum progress of `train_dataset` (an `InstructDataset` built with `curriculum_steps`) is set to
    `global_step / curriculum_steps` when training starts or resumes and before every step. The dataset must be read
    in the training process (`dataloader_num_workers=0`): worker processes hold copies that miss the update.
    """

    def __init__(
        self,
        train_dataset=None,
        freeze_encoder_steps: int = 0,
        max_train_minutes: float | None = None,
        loss: ShineLoss | None = None,
    ):
        if freeze_encoder_steps < 0:
            raise ValueError(f"freeze_encoder_steps must be >= 0, got {freeze_encoder_steps}.")
        if max_train_minutes is not None and max_train_minutes <= 0:
            raise ValueError(f"max_train_minutes must be > 0 or None, got {max_train_minutes}.")
        self.train_dataset = train_dataset
        self.freeze_encoder_steps = freeze_encoder_steps
        self.max_train_minutes = max_train_minutes
        self.loss = loss
        self._started = time.monotonic()

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._started = time.monotonic()
        self._set_progress(state.global_step)
        self._set_encoder(model, state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        if self.max_train_minutes is not None and time.monotonic() - self._started > 60 * self.max_train_minutes:
            control.should_training_stop = True
            control.should_save = True

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        self._set_progress(state.global_step)
        self._set_encoder(model, state.global_step)

    def _set_encoder(self, model, step: int) -> None:
        tuner = getattr(model, "base_model", None)
        if tuner is not None and hasattr(tuner, "train_encoder"):
            tuner.train_encoder = step >= self.freeze_encoder_steps

    def _set_progress(self, step: int) -> None:
        steps = getattr(self.train_dataset, "curriculum_steps", None)
        if steps:
            self.train_dataset.set_progress(min(1.0, step / steps))

    def on_log(self, args, state, control, logs=None, model=None, **kwargs):
        """Add the skip counts to the printed logs and to the `log_history` entry the Trainer just appended (saved
        in trainer_state.json); `report_to` integrations run before user callbacks and do not see them."""
        skipped = getattr(self.loss, "skipped", None)
        if logs is not None and skipped is not None:
            counts = {f"skipped_{reason}": count for reason, count in skipped.items()}
            logs.update(counts)
            if state.log_history:
                state.log_history[-1].update(counts)


def check_training_arguments(args: TrainingArguments) -> None:
    """SHINE batches carry `context_input_ids`/`context_attention_mask`, which the Trainer would drop."""
    if args.remove_unused_columns:
        raise ValueError(
            "SHINE needs the context columns: create TrainingArguments with remove_unused_columns=False "
            "(the example scripts do this for you)."
        )


def has_accelerator() -> bool:
    """Whether PyTorch sees a GPU (or another accelerator) on this machine."""
    accelerator = getattr(torch, "accelerator", None)
    return accelerator.is_available() if accelerator is not None else torch.cuda.is_available()


def data_parallel_on_cpu_without_gpu() -> bool:
    """Under `torchrun` / `accelerate launch` (WORLD_SIZE > 1) on a machine without a GPU, make the run one
    data-parallel training on CPU (gloo) by setting `ACCELERATE_USE_CPU=true`, as `accelerate launch` does for a
    `use_cpu: true` config. Without it transformers initialises the process group but trains WORLD_SIZE independent
    copies into one output_dir ("process group is initialized, but parallel_mode != ParallelMode.DISTRIBUTED").
    Call it before `TrainingArguments` are created (they set up the devices). Returns whether it switched."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    already = os.environ.get("ACCELERATE_USE_CPU", "false").lower() in ("1", "true", "yes")
    if world_size <= 1 or has_accelerator() or already:
        return False
    os.environ["ACCELERATE_USE_CPU"] = "true"
    if os.environ.get("RANK", "0") == "0":
        logger.warning("No GPU: data-parallel training on CPU over %d processes (gloo).", world_size)
    return True


def check_data_parallel(args: TrainingArguments) -> None:
    """Raise ValueError when the process group is up but transformers will not train data-parallel (N separate
    trainings into one output_dir): `torchrun` on a machine without a GPU with TrainingArguments made without
    `use_cpu=True`."""
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    if distributed and args.parallel_mode.value != "distributed":
        raise ValueError(
            f"{torch.distributed.get_world_size()} processes were launched, but transformers would train "
            f"{torch.distributed.get_world_size()} independent copies into one output_dir (parallel_mode "
            f"{args.parallel_mode.value}): on a machine without a GPU, create TrainingArguments with use_cpu=True "
            "(or call peft_shine.training.data_parallel_on_cpu_without_gpu() before creating them; the example "
            "scripts do)."
        )


def pin_memory_for_device(args: TrainingArguments) -> None:
    """Pin batch memory only when training on an accelerator: on a CPU-only run pinning does nothing and PyTorch's
    DataLoader warns on every run ("'pin_memory' argument is set as true but no accelerator is found")."""
    if args.dataloader_pin_memory and args.device.type == "cpu":
        args.dataloader_pin_memory = False


def train_and_save(
    model: PeftModel,
    training_args: TrainingArguments,
    train_dataset,
    data_collator,
    eval_dataset=None,
    freeze_encoder_steps: int = 0,
    max_train_minutes: float | None = None,
    distill_weight: float = 0.0,
) -> Trainer:
    """Train with a stock `Trainer` (loss: `ShineLoss(model, distill_weight)` as its `compute_loss_func`), save the
    adapter (+ tokenizer) and `trainer_state.json` to `output_dir`, push if asked."""
    check_training_arguments(training_args)
    check_data_parallel(training_args)
    pin_memory_for_device(training_args)
    loss = ShineLoss(model, distill_weight)
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=data_collator,
        processing_class=model.base_model.resolve_tokenizer(),  # saved with every checkpoint and the final adapter
        compute_loss_func=loss,
        callbacks=[ShineTrainingCallback(train_dataset, freeze_encoder_steps, max_train_minutes, loss)],
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(training_args.output_dir)
    trainer.save_state()  # trainer_state.json (the whole log history) next to the adapter, also without checkpoints
    if training_args.push_to_hub:
        trainer.push_to_hub()
    return trainer
