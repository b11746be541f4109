"""Glue for training SHINE with the stock `transformers.Trainer` (no training loop here): model construction, checks
before the first step (context lengths, data parallelism), a callback that logs skipped batches and drives the
context-length curriculum, and `train_and_save`."""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Sequence

import torch
from peft import PeftModel
from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from ..config import ShineConfig
from ..defaults import shine_model
from .arguments import ShineArguments
from .objective import ShineLoss

logger = logging.getLogger(__name__)


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
