"""Stage 2 of SHINE: instruction fine-tuning on context-question-answer data with a stock `transformers.Trainer`.

    python examples/instruct.py --train_file squad/train.jsonl.gz,babi/train.jsonl.gz --output_dir runs/instruct \
        --adapter_name_or_path runs/pretrain --mode multi --curriculum_steps 300 --max_steps 1000 \
        --per_device_train_batch_size 4 --learning_rate 3e-5

`--dataset_name` (a Hub dataset id such as rajpurkar/squad, or a `Dataset.save_to_disk` folder; `--dataset_config_name`,
`--train_split`, `--eval_split`) replaces `--train_file`. Every `TrainingArguments` flag works; launch with `python`,
`torchrun` or `accelerate launch` (docs/training.md).
`--loss distill` (or `--loss mix --distill_weight w`) adds the optional distillation objective (docs/training.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from transformers import HfArgumentParser, Trainer, TrainingArguments

from peft_shine.defaults import load_base
from peft_shine.training import (
    DataFileArguments,
    ModelArguments,
    ScheduleArguments,
    ShineArguments,
    build_shine_model,
    check_context_lengths,
    data_parallel_on_cpu_without_gpu,
    train_and_save,
)
from peft_shine.training.data import InstructDataset, ShineDataCollator, load_qa_records


@dataclass
class InstructDataArguments(DataFileArguments):
    mode: str = field(default="multi", metadata={"help": "'multi' (all questions of a context) or 'single'."})
    num_distractors: int = field(default=0, metadata={"help": "Single-QA: other contexts mixed with the gold one."})
    curriculum_steps: int | None = field(
        default=None, metadata={"help": "Grow contexts from the answer's sentence to the full text over these steps."}
    )


@dataclass
class ObjectiveArguments:
    loss: Literal["ce", "distill", "mix"] = field(
        default="ce",
        metadata={
            "help": "'ce': cross-entropy on the answers (the paper); 'distill': KL to the base model that reads the "
            "context in its prompt; 'mix': distill_weight * KL + (1 - distill_weight) * CE."
        },
    )
    distill_weight: float = field(default=0.5, metadata={"help": "Weight of the KL term with --loss mix, in [0, 1]."})

    @property
    def weight(self) -> float:
        """The weight of the KL term in the loss: 0 for 'ce', 1 for 'distill', `distill_weight` for 'mix'."""
        return {"ce": 0.0, "distill": 1.0, "mix": self.distill_weight}[self.loss]


def main(argv: list[str] | None = None) -> Trainer:
    data_parallel_on_cpu_without_gpu()  # torchrun / accelerate launch without a GPU: one DDP run on CPU, not N
    parser = HfArgumentParser(
        (
            ModelArguments,
            InstructDataArguments,
            ObjectiveArguments,
            ShineArguments,
            ScheduleArguments,
            TrainingArguments,
        )
    )
    model_args, data_args, objective_args, shine_args, schedule_args, training_args = (
        parser.parse_args_into_dataclasses(args=argv)
    )
    training_args.remove_unused_columns = False  # the context columns must reach the collator
    base, tokenizer = load_base(model_args.model_name_or_path)
    model = build_shine_model(base, tokenizer, shine_args, model_args.adapter_name_or_path)
    train_source, eval_source = data_args.sources()
    records = load_qa_records(train_source)[: data_args.max_train_samples]
    options = dict(
        mode=data_args.mode,
        num_distractors=data_args.num_distractors,
        seed=training_args.seed,
        teacher=objective_args.loss != "ce",
    )
    train_dataset = InstructDataset(records, tokenizer, curriculum_steps=data_args.curriculum_steps, **options)
    eval_dataset = (
        InstructDataset(load_qa_records(eval_source), tokenizer, **options) if eval_source is not None else None
    )
    config = model.peft_config[model.active_adapter]
    check_context_lengths(train_dataset.evidence_token_counts(), config)  # now, not at the first batch
    if eval_dataset is not None:
        check_context_lengths(eval_dataset.evidence_token_counts(), config, "evaluation")
    collator = ShineDataCollator(tokenizer, config.max_context_tokens, config.context_overflow)
    return train_and_save(
        model,
        training_args,
        train_dataset,
        collator,
        eval_dataset,
        schedule_args.freeze_encoder_steps,
        schedule_args.max_train_minutes,
        distill_weight=objective_args.weight,
    )


if __name__ == "__main__":
    main()
