"""Run by `torchrun --nproc_per_node 2` from tests/test_training.py: a few Trainer steps of a tiny SHINE model on
CPU (gloo); each rank writes its trainable tensors before and after training, and the data it saw."""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import Trainer, TrainingArguments

from peft_shine.training import ShineTrainingCallback
from peft_shine.training.data import InstructDataset, ShineDataCollator
from peft_shine.training.objective import ShineLoss
from tests.helpers import build_shine, build_tokenizer

QA = [
    {
        "context": f"Item {i} is stored in room {i * 7 % 13}.",
        "question": f"Where is item {i}?",
        "answers": [f"room {i * 7 % 13}"],
    }
    for i in range(16)
]


def trainable(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def main(out: Path) -> None:
    tokenizer = build_tokenizer()
    model = build_shine(vocab_size=len(tokenizer)).train()
    args = TrainingArguments(
        output_dir=str(out / "run"),
        max_steps=3,
        per_device_train_batch_size=2,
        learning_rate=1e-2,
        remove_unused_columns=False,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        seed=0,
        dataloader_num_workers=0,
        logging_steps=1,
    )
    rank = args.process_index
    seen = []
    collator = ShineDataCollator(tokenizer, 128)

    def recording_collator(features):
        batch = collator(features)
        seen.append(batch["context_input_ids"].tolist())
        return batch

    dataset = InstructDataset(QA, tokenizer, mode="single", seed=0)
    before = trainable(model)
    loss = ShineLoss(model)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=recording_collator,
        compute_loss_func=loss,
        callbacks=[ShineTrainingCallback(dataset, loss=loss)],
    )
    trainer.train()
    save_file(before, str(out / f"before{rank}.safetensors"))
    save_file(trainable(model), str(out / f"after{rank}.safetensors"))
    (out / f"seen{rank}.json").write_text(json.dumps({"seen": seen, "world_size": args.world_size}))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
