"""Stage 1 of SHINE: self-supervised pretraining on plain text (RECON / COMP) with a stock `transformers.Trainer`.

    python examples/pretrain.py --train_file texts.jsonl --output_dir runs/pretrain --pack_tokens 512 \
        --lora_rank 8 --meta_lora_rank 16 --m2p_layers 4 --max_steps 1000 --learning_rate 5e-5

`--train_file` takes JSONL(.gz) with a `text` field or `.txt` files (repeatable or comma-separated); `--dataset_name`
(a Hub dataset id or a `Dataset.save_to_disk` folder, its `text` column) replaces it. Every
`TrainingArguments` flag works; launch with `python`, `torchrun` or `accelerate launch` (docs/training.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
from peft_shine.training.data import PretrainDataset, ShineDataCollator, load_texts


@dataclass
class PretrainDataArguments(DataFileArguments):
    text_field: str = field(default="text", metadata={"help": "JSONL field holding the text."})
    split_paragraphs: bool = field(default=False, metadata={"help": ".txt files: one text per paragraph."})
    pack_tokens: int | None = field(default=None, metadata={"help": "Pack short texts up to this many tokens."})


def main(argv: list[str] | None = None) -> Trainer:
    data_parallel_on_cpu_without_gpu()  # torchrun / accelerate launch without a GPU: one DDP run on CPU, not N
    parser = HfArgumentParser(
        (ModelArguments, PretrainDataArguments, ShineArguments, ScheduleArguments, TrainingArguments)
    )
    model_args, data_args, shine_args, schedule_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    training_args.remove_unused_columns = False  # the context columns must reach the collator
    base, tokenizer = load_base(model_args.model_name_or_path)
    model = build_shine_model(base, tokenizer, shine_args, model_args.adapter_name_or_path)

    def dataset(sources) -> PretrainDataset:
        texts = load_texts(sources, data_args.text_field, data_args.split_paragraphs)[: data_args.max_train_samples]
        return PretrainDataset(texts, tokenizer, seed=training_args.seed, pack_tokens=data_args.pack_tokens)

    train_source, eval_source = data_args.sources()
    train_dataset = dataset(train_source)
    eval_dataset = dataset(eval_source) if eval_source is not None else None
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
    )


if __name__ == "__main__":
    main()
