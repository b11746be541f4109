"""Training SHINE with the stock `transformers.Trainer` (or TRL): arguments, data, the loss, the glue. Not loaded by
`import peft_shine` (the core never imports training code).

    arguments.py     HfArgumentParser dataclasses (ShineArguments generated from ShineConfig)
    trainer.py       build_shine_model, ShineTrainingCallback, checks, train_and_save
    objective.py     ShineLoss, the Trainer's compute_loss_func
    distillation.py  the optional KL to the in-context base
    data/            examples, datasets, collator, curriculum
    synthetic.py     invented-facts documents (python -m peft_shine.training.synthetic)
    sft.py           TRL: ShineSFTTrainer
"""

from .arguments import (
    ARGUMENT_TYPES,
    STRUCTURE_FIELDS,
    DataFileArguments,
    ModelArguments,
    ScheduleArguments,
    ShineArguments,
    split_paths,
)
from .objective import ShineLoss
from .trainer import (
    ShineTrainingCallback,
    build_shine_model,
    check_context_lengths,
    check_data_parallel,
    check_training_arguments,
    data_parallel_on_cpu_without_gpu,
    has_accelerator,
    pin_memory_for_device,
    train_and_save,
)

__all__ = [
    "ARGUMENT_TYPES",
    "STRUCTURE_FIELDS",
    "DataFileArguments",
    "ModelArguments",
    "ScheduleArguments",
    "ShineArguments",
    "ShineLoss",
    "ShineTrainingCallback",
    "build_shine_model",
    "check_context_lengths",
    "check_data_parallel",
    "check_training_arguments",
    "data_parallel_on_cpu_without_gpu",
    "has_accelerator",
    "pin_memory_for_device",
    "split_paths",
    "train_and_save",
]
