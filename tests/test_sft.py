"""TRL: a plain SFTTrainer on a SHINE model stops at its first step with the fix in the message; ShineSFTTrainer
trains from a context column (TRL's messages or prompt/completion formats) on the same tensors as the stock path,
with the SHINE loss, its skip counts and the context-length curriculum."""

import pytest
import torch

pytest.importorskip("trl", reason="needs the trl extra: pip install -e '.[trl]'")

from datasets import Dataset  # noqa: E402
from peft import PeftModel  # noqa: E402
from trl import SFTConfig, SFTTrainer  # noqa: E402

from peft_shine import ShineConfig  # noqa: E402
from peft_shine.training.data import InstructDataset, ShineDataCollator  # noqa: E402
from peft_shine.training.sft import ShineSFTCollator, ShineSFTTrainer  # noqa: E402
from tests.helpers import QA, SMALL_SHINE, build_model, build_shine  # noqa: E402


def rows(kind: str) -> list[dict]:
    """The QA records as TRL rows with a context column: conversational prompt/completion or messages."""
    out = []
    for record in QA:
        user = {"role": "user", "content": record["question"]}
        assistant = {"role": "assistant", "content": record["answers"][0]}
        if kind == "messages":
            out.append({"context": record["context"], "messages": [user, assistant]})
        else:
            out.append({"context": record["context"], "prompt": [user], "completion": [assistant]})
    return out


def sft_args(tmp_path, **overrides) -> SFTConfig:
    options = dict(
        output_dir=str(tmp_path / "sft"),
        max_steps=2,
        per_device_train_batch_size=2,
        learning_rate=1e-2,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        logging_steps=1,
        dataloader_num_workers=0,
        seed=0,
    )
    return SFTConfig(**{**options, **overrides})


def trainable(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def test_plain_sft_trainer_stops_at_the_first_step_and_says_how_to_pass_contexts(tokenizer, tmp_path):
    model = build_shine(vocab_size=len(tokenizer)).train()
    before = trainable(model)
    trainer = SFTTrainer(
        model=model,
        args=sft_args(tmp_path),
        train_dataset=Dataset.from_list(rows("messages")),
        processing_class=tokenizer,
    )
    with pytest.raises(ValueError, match="no context_input_ids.*ShineSFTTrainer"):
        trainer.train()  # before: grad_norm 0 on every step, nothing moved, no word
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters() if n in before)


@pytest.mark.parametrize("kind", ["prompt_completion", "messages"])
def test_shine_sft_trainer_trains_every_shine_tensor_from_a_context_column(kind, tokenizer, tmp_path):
    trainer = ShineSFTTrainer(
        build_model(vocab_size=len(tokenizer)),
        args=sft_args(tmp_path),
        train_dataset=Dataset.from_list(rows(kind)),
        processing_class=tokenizer,
        peft_config=ShineConfig(**SMALL_SHINE),
    )
    model = trainer.model
    before = trainable(model)
    assert before and all("shine_" in name for name in before)
    trainer.train()
    moved = [n for n, p in model.named_parameters() if n in before and not torch.equal(before[n], p)]
    assert sorted(moved) == sorted(before)
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert all(entry["grad_norm"] > 0 for entry in logs)
    assert {"skipped_no_answer_tokens", "mean_token_accuracy", "entropy", "num_tokens"} <= set(logs[0])


def test_shine_sft_trainer_saves_an_adapter_that_loads_and_absorbs(tokenizer, tmp_path):
    model = build_shine(vocab_size=len(tokenizer)).train()
    trainer = ShineSFTTrainer(
        model,
        args=sft_args(tmp_path, max_steps=1),
        train_dataset=Dataset.from_list(rows("prompt_completion")),
        processing_class=tokenizer,
    )
    trainer.train()
    trainer.save_model(str(tmp_path / "adapter"))
    loaded = PeftModel.from_pretrained(build_model(vocab_size=len(tokenizer)), str(tmp_path / "adapter"))
    with torch.no_grad():
        expected = model.eval().base_model.generate_lora(*model.base_model.tokenize_contexts(QA[0]["context"]))
        got = loaded.base_model.generate_lora(*loaded.base_model.tokenize_contexts(QA[0]["context"], tokenizer))
    for key, (a, b) in expected.items():
        torch.testing.assert_close(got[key][0], a)
        torch.testing.assert_close(got[key][1], b)


def test_sft_batches_equal_the_stock_trainer_batches(tokenizer, tmp_path):
    """The TRL path trains on exactly the tensors of InstructDataset + ShineDataCollator (prompt/completion rows)."""
    trainer = ShineSFTTrainer(
        build_shine(vocab_size=len(tokenizer)).train(),
        args=sft_args(tmp_path, shuffle_dataset=False),
        train_dataset=Dataset.from_list(rows("prompt_completion")),
        processing_class=tokenizer,
    )
    batch = next(iter(trainer.get_train_dataloader()))
    stock_items = {tuple(item["input_ids"]): item for item in InstructDataset(QA, tokenizer, mode="single")}
    stock = ShineDataCollator(tokenizer, 2048)(
        [stock_items[tuple(ids[ids != tokenizer.pad_token_id].tolist())] for ids in batch["input_ids"]]
    )
    for key in ("input_ids", "attention_mask", "labels", "context_input_ids", "context_attention_mask"):
        assert torch.equal(batch[key], stock[key]), key


def test_sft_collator_curriculum_grows_contexts_from_the_answer_sentence(tokenizer):
    context = "The harbour froze in 1902. The lighthouse was built by Clara Vennet. Fishing stopped for a year."
    feature = {
        "context": context,
        "messages": [{"role": "user", "content": "Who built it?"}, {"role": "assistant", "content": "Clara Vennet"}],
        "input_ids": [5, 6, 7],
        "labels": [-100, 6, 7],
    }
    collator = ShineSFTCollator(tokenizer, curriculum_steps=10)
    short = tokenizer("The lighthouse was built by Clara Vennet.", add_special_tokens=False)["input_ids"]
    full = tokenizer(context, add_special_tokens=False)["input_ids"]
    collator.set_progress(0.0)
    assert collator([feature])["context_input_ids"][0].tolist() == short
    collator.set_progress(1.0)
    assert collator([feature])["context_input_ids"][0].tolist() == full
    with pytest.raises(ValueError, match="progress must be in"):
        collator.set_progress(1.5)


def test_shine_sft_trainer_drives_the_curriculum_and_evaluates_on_full_contexts(tokenizer, tmp_path):
    dataset = Dataset.from_list(rows("prompt_completion"))
    trainer = ShineSFTTrainer(
        build_shine(vocab_size=len(tokenizer)).train(),
        args=sft_args(tmp_path, max_steps=3),
        train_dataset=dataset,
        eval_dataset=dataset,
        processing_class=tokenizer,
        curriculum_steps=4,
    )
    trainer.train()
    assert trainer.data_collator.progress == pytest.approx(2 / 4)  # set before the third (last) step
    assert trainer.get_eval_dataloader().collate_fn.curriculum_steps is None
    assert trainer.data_collator.curriculum_steps == 4


def test_shine_sft_trainer_refuses_what_would_separate_rows_from_contexts(tokenizer, tmp_path):
    model = build_shine(vocab_size=len(tokenizer)).train()
    no_context = Dataset.from_list([{k: v for k, v in row.items() if k != "context"} for row in rows("messages")])
    with pytest.raises(ValueError, match="no context column 'context'.*columns: \\['messages'\\]"):
        ShineSFTTrainer(model, args=sft_args(tmp_path), train_dataset=no_context, processing_class=tokenizer)
    with pytest.raises(ValueError, match="packing"):
        ShineSFTTrainer(
            model,
            args=sft_args(tmp_path, packing=True),
            train_dataset=Dataset.from_list(rows("messages")),
            processing_class=tokenizer,
        )
    with pytest.raises(ValueError, match="4 of 4 training items have a context longer than max_context_tokens=3"):
        ShineSFTTrainer(
            build_shine(vocab_size=len(tokenizer), max_context_tokens=3).train(),
            args=sft_args(tmp_path),
            train_dataset=Dataset.from_list(rows("messages")),
            processing_class=tokenizer,
        )
    with pytest.raises(TypeError, match="trains a SHINE model"):
        ShineSFTTrainer(
            build_model(vocab_size=len(tokenizer)),
            args=sft_args(tmp_path),
            train_dataset=Dataset.from_list(rows("messages")),
            processing_class=tokenizer,
        )
