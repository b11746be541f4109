"""The optional distillation objective: the answer-token KL, the teacher fields of the data pipeline, the training
forward with a teacher, and `examples/instruct.py --loss distill|mix`."""

import pytest
import torch
import torch.nn.functional as F

from peft_shine.tokenization import ICL_TEMPLATE
from peft_shine.training.data import IGNORE_INDEX, InstructDataset, ShineDataCollator, short_context
from peft_shine.training.distillation import answer_token_kl
from peft_shine.training.objective import ShineLoss
from tests.helpers import QA, ROOT, build_model, build_shine, write_jsonl

MULTI = [
    {"context": "Mary went to the kitchen. John stayed home.", "question": "Where is Mary?", "answers": ["kitchen"]},
    {"context": "Mary went to the kitchen. John stayed home.", "question": "Who stayed?", "answers": ["John"]},
    *QA,
]


def hand_kl(student_logits, labels, teacher_logits, teacher_labels) -> torch.Tensor:
    """KL(teacher || student) by loops: the k-th predicting position of each student row against the k-th of the
    teacher row, averaged over all matched positions."""
    terms = []
    for row in range(labels.shape[0]):
        student = [i for i in range(labels.shape[1] - 1) if labels[row, i + 1] != IGNORE_INDEX]
        teacher = [j for j in range(teacher_labels.shape[1] - 1) if teacher_labels[row, j + 1] != IGNORE_INDEX]
        for i, j in zip(student, teacher, strict=True):
            p = teacher_logits[row, j].double().softmax(-1)
            q = student_logits[row, i].double().softmax(-1)
            terms.append((p * (p.log() - q.log())).sum())
    return torch.stack(terms).mean()


def small_batch():
    """Student (2, 5) and teacher (2, 7) sequences labelling the same tokens, with logits over 4 tokens."""
    torch.manual_seed(0)
    labels = torch.tensor([[-100, -100, 3, 1, -100], [-100, 2, 0, 1, 2]])
    teacher_labels = torch.tensor([[-100, -100, -100, -100, 3, 1, -100], [-100, -100, -100, 2, 0, 1, 2]])
    return torch.randn(2, 5, 4), labels, torch.randn(2, 7, 4), teacher_labels


def test_kl_matches_a_hand_computation_and_is_zero_for_equal_distributions():
    student, labels, teacher, teacher_labels = small_batch()
    kl = answer_token_kl(student, labels, teacher, teacher_labels)
    assert kl.dim() == 0 and kl.item() > 0.01
    torch.testing.assert_close(kl.double(), hand_kl(student, labels, teacher, teacher_labels))
    # the teacher predicts with the student's logits (plus a constant, which softmax ignores) at the labelled
    # positions, and with anything elsewhere
    matched = teacher.clone()
    matched[0, 3:5] = student[0, 1:3] + 5.0
    matched[1, 2:6] = student[1, 0:4]
    assert answer_token_kl(student, labels, matched, teacher_labels).abs().item() < 1e-6
    matched[1, 4, 2] += 1.0
    assert answer_token_kl(student, labels, matched, teacher_labels).item() > 1e-4
    # normalised by the Trainer's token count (6 labelled tokens here) instead of the mean
    torch.testing.assert_close(answer_token_kl(student, labels, teacher, teacher_labels, 12), kl / 2)


def test_mismatched_answer_tokens_raise():
    student, labels, teacher, teacher_labels = small_batch()
    fewer = teacher_labels.clone()
    fewer[1, 3] = IGNORE_INDEX
    with pytest.raises(ValueError, match=r"different numbers of answer tokens in rows \[1\] \(student \[4\], teacher"):
        answer_token_kl(student, labels, teacher, fewer)
    other = teacher_labels.clone()
    other[0, 4] = 2
    with pytest.raises(ValueError, match="different answer tokens"):
        answer_token_kl(student, labels, teacher, other)


def labelled(ids: list[int], labels: list[int]) -> list[int]:
    return [token for token, label in zip(ids, labels) if label != IGNORE_INDEX]


@pytest.mark.parametrize(
    "options",
    [dict(mode="multi"), dict(mode="single", num_distractors=2), dict(mode="single", curriculum_steps=10)],
    ids=["multi", "distractors", "curriculum"],
)
def test_teacher_fields_are_the_icl_chat_with_the_same_evidence_and_answers(tokenizer, options):
    student_only = InstructDataset(MULTI, tokenizer, seed=3, **options)
    dataset = InstructDataset(MULTI, tokenizer, seed=3, teacher=True, **options)
    shortened = 0
    for index in range(len(dataset)):
        example = dataset[index]
        assert {k: v for k, v in example.items() if not k.startswith("teacher_")} == student_only[index]
        assert "teacher_input_ids" not in student_only[index]
        evidence = tokenizer.decode(example["context_input_ids"])
        item = dataset.items[index]
        qas = item["qas"] if "qas" in item else [(item["question"], item["answers"])]
        messages = []
        for turn, (question, answers) in enumerate(qas):
            content = ICL_TEMPLATE.format(context=evidence, question=question) if turn == 0 else question
            messages += [{"role": "user", "content": content}, {"role": "assistant", "content": answers[0]}]
        assert tokenizer.decode(example["teacher_input_ids"]) == tokenizer.apply_chat_template(messages, tokenize=False)
        answer_ids = labelled(example["input_ids"], example["labels"])
        assert labelled(example["teacher_input_ids"], example["teacher_labels"]) == answer_ids
        assert tokenizer.decode(answer_ids) == "".join(answers[0] + "<|im_end|>\n" for _, answers in qas)
        if options.get("curriculum_steps"):  # progress 0: the teacher reads the short context too
            assert evidence == short_context(item)
            shortened += evidence != item["context"]
        if options.get("num_distractors"):
            assert len(evidence.split("\n\n")) == 3
    assert shortened or not options.get("curriculum_steps")


def test_collator_pads_teacher_fields_right_and_the_weight_belongs_to_the_loss(tokenizer):
    features = [
        {"input_ids": [5, 6], "labels": [-100, 6], "context_input_ids": [9], "teacher_input_ids": [7, 8, 5, 6]},
        {"input_ids": [5], "labels": [5], "context_input_ids": [9], "teacher_input_ids": [7, 5]},
    ]
    features[0]["teacher_labels"] = [-100, -100, -100, 6]
    features[1]["teacher_labels"] = [-100, 5]
    batch = ShineDataCollator(tokenizer)(features)
    pad = tokenizer.pad_token_id
    assert batch["teacher_input_ids"].tolist() == [[7, 8, 5, 6], [7, 5, pad, pad]]
    assert batch["teacher_attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert batch["teacher_labels"].tolist() == [[-100, -100, -100, 6], [-100, 5, -100, -100]]
    assert "distill_weight" not in batch
    plain = ShineDataCollator(tokenizer)([{k: v for k, v in f.items() if "teacher" not in k} for f in features])
    assert not any("teacher" in key or "distill" in key for key in plain)
    with pytest.raises(ValueError, match="distill_weight"):
        ShineLoss(build_shine(vocab_size=len(tokenizer)), distill_weight=1.5)


@pytest.mark.parametrize("weight", [1.0, 0.3])
def test_shine_loss_mixes_kl_to_the_plain_base_and_cross_entropy(tokenizer, weight):
    model = build_shine(vocab_size=len(tokenizer)).train()
    loss_func = ShineLoss(model, weight)
    dataset = InstructDataset(MULTI, tokenizer, mode="single", num_distractors=1, teacher=True)
    batch = ShineDataCollator(tokenizer, 128)([dataset[0], dataset[1], dataset[2]])
    inputs = {key: value for key, value in batch.items() if key != "labels"}  # what the Trainer passes to forward
    out = model(**inputs)  # the loss's pre-hook takes the teacher fields out of the model's inputs
    loss = loss_func(out, batch["labels"])
    assert torch.isfinite(loss)
    loss.backward(retain_graph=True)
    trainable = [param for param in model.parameters() if param.requires_grad]
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None and param.grad.abs().sum() > 0, name
        else:
            assert param.grad is None, name
    assert model.base_model.runtime.state.mode == "base"
    with torch.no_grad():  # the teacher is the base model alone (build_shine's meta-LoRA is non-zero)
        base = build_model("llama", len(tokenizer))
        teacher = base(input_ids=batch["teacher_input_ids"], attention_mask=batch["teacher_attention_mask"]).logits
    labels = batch["labels"]
    kl = hand_kl(out.logits, labels, teacher, batch["teacher_labels"])
    ce = F.cross_entropy(out.logits[:, :-1].flatten(0, 1).double(), labels[:, 1:].flatten(), ignore_index=IGNORE_INDEX)
    expected = weight * kl + (1 - weight) * ce
    torch.testing.assert_close(loss.detach().double(), expected.detach())
    for param, grad in zip(trainable, torch.autograd.grad(expected, trainable)):
        torch.testing.assert_close(param.grad, grad.float(), rtol=1e-4, atol=1e-7)


def test_teacher_fields_are_not_model_inputs(tokenizer):
    model = build_shine(vocab_size=len(tokenizer)).train()
    dataset = InstructDataset(QA, tokenizer, mode="single", teacher=True)
    batch = ShineDataCollator(tokenizer, 128)([dataset[0]])
    with pytest.raises(ValueError, match="loss inputs, not model inputs.*ShineLoss"):
        model(**batch)
    with pytest.raises(ValueError, match="teacher_input_ids and teacher_labels"):
        ShineLoss(model, 0.5)(model(**{k: v for k, v in batch.items() if "teacher" not in k}), batch["labels"])


def test_batches_without_answer_tokens_are_still_skipped_with_a_teacher(tokenizer):
    model = build_shine(vocab_size=len(tokenizer)).train()
    loss_func = ShineLoss(model, 0.5)
    dataset = InstructDataset(QA, tokenizer, mode="single", teacher=True)
    batch = ShineDataCollator(tokenizer, 128)([dataset[0]])
    labels = batch.pop("labels").fill_(IGNORE_INDEX)
    loss = loss_func(model(**batch), labels)
    assert loss.item() == 0.0 and loss_func.skipped["no_answer_tokens"] == 1


@pytest.mark.parametrize(("loss", "weight"), [("distill", 1.0), ("mix", 0.25)])
def test_instruct_script_trains_with_the_distillation_loss(loss, weight, saved_base, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    import instruct

    seen = []
    call = ShineLoss.__call__

    def recording_call(self, outputs, labels, num_items_in_batch=None):
        seen.append(("teacher_input_ids" in self._teacher, self.distill_weight))
        return call(self, outputs, labels, num_items_in_batch)

    monkeypatch.setattr(ShineLoss, "__call__", recording_call)
    data = write_jsonl(tmp_path / "qa.jsonl", QA)
    out = tmp_path / "out"
    flags = ["--loss", loss, "--distill_weight", str(weight), "--max_steps", "2", "--per_device_train_batch_size", "2"]
    common = ["--lora_rank", "2", "--m2p_layers", "2", "--report_to", "none", "--save_strategy", "no"]
    instruct.main(
        ["--model_name_or_path", str(saved_base), "--train_file", str(data), "--output_dir", str(out)]
        + flags
        + common
        + ["--use_cpu", "true", "--logging_steps", "1", "--curriculum_steps", "2"]
    )
    assert (out / "adapter_model.safetensors").exists()
    assert seen == [(True, weight)] * 2


def test_a_new_shine_loss_on_the_same_model_receives_the_teacher_fields(tokenizer):
    """Training twice on one model (two Trainers) builds two losses; only the newest one may take the batch's teacher
    fields, else it would find none."""
    model = build_shine(vocab_size=len(tokenizer)).train()
    ShineLoss(model, 0.5)
    newest = ShineLoss(model, 0.5)
    batch = ShineDataCollator(tokenizer, 128)([InstructDataset(QA, tokenizer, mode="single", teacher=True)[0]])
    labels = batch.pop("labels")
    assert torch.isfinite(newest(model(**batch), labels))
