"""What only a GPU can check: a bf16 training step, exact fp32 export and batched absorption on CUDA. CI has no GPU,
so these skip there; `benchmarks/gpu/check.sh` runs them on the device machine (any CUDA machine: `pytest
tests/test_cuda.py`)."""

import pytest
import torch
from peft import PeftModel
from transformers import Trainer, TrainingArguments

from peft_shine.training import ShineTrainingCallback
from peft_shine.training.data import InstructDataset, ShineDataCollator
from tests.helpers import CONTEXTS, build_model, build_shine

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU: run benchmarks/gpu/check.sh on a machine with one"
)
QA = [
    {"context": CONTEXTS[0], "question": "Who built the lighthouse?", "answers": ["Clara Vennet"]},
    {"context": CONTEXTS[1], "question": "Where is Mary?", "answers": ["the kitchen"]},
    {"context": CONTEXTS[2], "question": "Who signed the report?", "answers": ["Ingrid Solberg"]},
]


def test_bf16_training_steps_on_cuda_move_every_trainable_tensor(tokenizer, tmp_path):
    model = build_shine(vocab_size=len(tokenizer)).cuda().train()
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    dataset = InstructDataset(QA, tokenizer, mode="single")
    args = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=3,
        per_device_train_batch_size=3,
        learning_rate=1e-2,
        bf16=True,
        remove_unused_columns=False,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=ShineDataCollator(tokenizer, 64),
        callbacks=[ShineTrainingCallback(dataset)],
    )
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    moved = [n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(p, before[n])]
    assert len(moved) == len(before)


def test_exported_lora_reproduces_absorbed_logits_on_cuda_in_fp32(tokenizer, tmp_path):
    model = build_shine(vocab_size=len(tokenizer)).cuda()
    absorbed = model.absorb_context(CONTEXTS[:2], tokenizer=tokenizer)
    ids = torch.tensor([tokenizer("Who signed the report?")["input_ids"]], device="cuda")
    with torch.no_grad():
        shine_logits = model(input_ids=ids.repeat(2, 1)).logits[1]
    absorbed[1].save_pretrained(tmp_path / "ctx1")
    plain = PeftModel.from_pretrained(build_model("llama", len(tokenizer)).cuda(), tmp_path / "ctx1").eval()
    with torch.no_grad():
        assert (plain(input_ids=ids).logits[0] - shine_logits).abs().max() <= 1e-4


def test_batched_absorb_on_cuda_equals_each_context_alone(tokenizer):
    model = build_shine(vocab_size=len(tokenizer)).cuda()
    batched = model.absorb_context(CONTEXTS, tokenizer=tokenizer)
    for index, context in enumerate(CONTEXTS):
        alone = model.absorb_context(context, tokenizer=tokenizer)
        for key, (a, b) in alone.factors.items():
            torch.testing.assert_close(batched.factors[key][0][index], a[0], rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(batched.factors[key][1][index], b[0], rtol=1e-4, atol=1e-5)
