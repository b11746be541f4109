"""Glue for training SHINE with the stock `transformers.Trainer` (no training loop here): argument dataclasses shared
by `examples/pretrain.py` and `examples/instruct.py`, model construction, and a callback that logs skipped batches
and drives the context-length curriculum."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from peft import PeftModel
from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from .config import ShineConfig
from .defaults import shine_model
from .objective import ShineLoss


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
    """Data files shared by the example scripts (each script subclasses it with its own options)."""

    train_file: list[str] = field(
        default=None,
        metadata={
            "help": "Training data files; repeatable or comma-separated (see the script's docstring for formats).",
            "action": "extend",
            "nargs": "+",
        },
    )
    eval_file: str | None = field(default=None, metadata={"help": "Evaluation data file (evaluation loss)."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training items."})


@dataclass
class ShineArguments:
    """`ShineConfig` fields exposed on the command line (used when no adapter is given)."""

    lora_rank: int = field(default=8, metadata={"help": "Rank of the generated LoRA."})
    meta_lora_rank: int = field(default=16, metadata={"help": "Rank of the meta-LoRA used while encoding."})
    m2p_layers: int = field(default=4, metadata={"help": "M2P transformer blocks (even)."})
    max_context_tokens: int = field(default=1024, metadata={"help": "Longest context encoded in one pass."})
    context_overflow: str = field(
        default="chunk",
        metadata={"help": "'chunk' (absorb splits long contexts; training raises), 'truncate', 'error'."},
    )
    target_modules: str | None = field(
        default=None,
        metadata={"help": "Comma-separated module names (e.g. 'down_proj') or 'all-linear'; default all linear."},
    )
    num_memory_tokens: int | None = field(default=None, metadata={"help": "Memory slots; default ceil(r*D/H)."})
    standardize_memory_states: bool = field(
        default=True, metadata={"help": "Standardise memory states before the M2P; False = the reference (raw)."}
    )
    context_position_ids: str = field(
        default="mask", metadata={"help": "Encode-pass position ids: 'mask' (cumsum) or 'arange' (the reference)."}
    )

    def to_config(self) -> ShineConfig:
        targets = [name.strip() for name in self.target_modules.split(",")] if self.target_modules else None
        targets = None if targets == ["all-linear"] else targets
        return ShineConfig(
            lora_rank=self.lora_rank,
            meta_lora_rank=self.meta_lora_rank,
            m2p_layers=self.m2p_layers,
            max_context_tokens=self.max_context_tokens,
            context_overflow=self.context_overflow,
            target_modules=targets,
            num_memory_tokens=self.num_memory_tokens,
            standardize_memory_states=self.standardize_memory_states,
            context_position_ids=self.context_position_ids,
        )


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
    """A trainable SHINE model: a new adapter from `shine_args`, or the given adapter loaded as trainable."""
    config = None if adapter_name_or_path else shine_args.to_config()
    return shine_model(base, tokenizer, adapter_name_or_path or None, config=config, is_trainable=True)


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
