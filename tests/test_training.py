"""Training with the stock transformers Trainer: overfitting, resume, mixed precision, checkpointing, skipped
batches, the example scripts, and data-parallel correctness with torchrun (gloo, CPU)."""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainingArguments

from peft_shine.training import ShineTrainingCallback, check_training_arguments
from peft_shine.training.data import InstructDataset, ShineDataCollator
from peft_shine.training.objective import ShineLoss
from tests.helpers import QA, ROOT, build_shine, train, write_jsonl


def losses(trainer):
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


def test_trainer_overfits_a_handful_of_examples(tokenizer, tmp_path):
    trainer, _ = train(tokenizer, tmp_path, steps=40, lr_scheduler_type="constant")
    trainer.train()
    history = losses(trainer)
    assert sum(history[-4:]) / 4 <= 0.5 * sum(history[:2]) / 2


def test_resume_from_checkpoint_continues_exactly(tokenizer, tmp_path):
    full, _ = train(tokenizer, tmp_path / "a", steps=6, save_strategy="steps", save_steps=3)
    full.train()
    checkpoint = tmp_path / "a" / "run" / "checkpoint-3"
    saved = sorted(p.name for p in checkpoint.iterdir())
    assert "adapter_model.safetensors" in saved and not [n for n in saved if n.startswith("model")]
    resumed, _ = train(tokenizer, tmp_path / "b", steps=6, save_strategy="steps", save_steps=3)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    torch.testing.assert_close(losses(resumed)[-3:], losses(full)[-3:], rtol=1e-5, atol=1e-6)


def test_bf16_autocast_and_activation_checkpointing_train(tokenizer, tmp_path):
    trainer, model = train(
        tokenizer,
        tmp_path,
        steps=2,
        bf16=True,
        activation_checkpointing=True,
        activation_checkpointing_kwargs={"use_reentrant": False},
    )
    before = model.base_model.hypernetwork.memory_embeddings.detach().clone()
    trainer.train()
    assert all(torch.isfinite(torch.tensor(losses(trainer))))
    assert not torch.equal(before, model.base_model.hypernetwork.memory_embeddings)


def test_batches_without_answer_tokens_are_skipped_and_counted(tokenizer):
    model = build_shine(vocab_size=len(tokenizer)).train()
    loss_func = ShineLoss(model)
    ids = torch.tensor([tokenizer("no answer here")["input_ids"]])
    loss = loss_func(model(input_ids=ids, context_input_ids=ids), torch.full_like(ids, -100))
    loss.backward()
    assert loss.item() == 0.0 and loss_func.skipped["no_answer_tokens"] == 1
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and not g.any() for g in grads)


def test_a_training_loss_without_contexts_raises_instead_of_learning_nothing(tokenizer):
    model = build_shine(vocab_size=len(tokenizer)).train()
    ids = torch.tensor([tokenizer("Who built it? Clara Vennet")["input_ids"]])
    with pytest.raises(ValueError, match="no context_input_ids.*ShineDataCollator.*ShineSFTTrainer"):
        model(input_ids=ids, labels=ids)  # PyTorch would say "element 0 of tensors does not require grad"
    loss_func = ShineLoss(model)  # the Trainer pops the labels before the forward when a loss function is given
    with pytest.raises(ValueError, match="batch had labels and no context_input_ids"):
        loss_func(model(input_ids=ids), ids)
    assert loss_func(model(input_ids=ids, context_input_ids=ids), ids).requires_grad
    with torch.no_grad():  # the base model's loss stays available outside training
        no_grad = model(input_ids=ids, labels=ids).loss
    assert torch.equal(model.eval()(input_ids=ids, labels=ids).loss, no_grad)


def test_shine_loss_cross_entropy_equals_the_base_models_own_loss(tokenizer):
    model = build_shine(vocab_size=len(tokenizer)).train()
    batch = ShineDataCollator(tokenizer, 64)([InstructDataset(QA, tokenizer, mode="single")[i] for i in range(3)])
    own = model(**batch).loss
    labels = batch.pop("labels")
    assert torch.equal(ShineLoss(model)(model(**batch), labels), own)
    tokens = int((labels[:, 1:] != -100).sum())
    assert torch.allclose(ShineLoss(model)(model(**batch), labels, tokens * 2), own / 2)


def test_frozen_encoder_warm_start_trains_the_m2p_alone(tokenizer):
    model = build_shine(vocab_size=len(tokenizer)).train()
    batch = ShineDataCollator(tokenizer, 64)([InstructDataset(QA, tokenizer, mode="single")[i] for i in range(2)])
    tuner = model.base_model
    results = {}
    for train_encoder in (True, False):
        model.zero_grad(set_to_none=True)
        tuner.train_encoder = train_encoder
        loss = model(**batch).loss
        loss.backward()
        grads = {name: p.grad for name, p in model.named_parameters() if p.requires_grad}
        results[train_encoder] = loss.item(), grads
    assert results[False][0] == pytest.approx(results[True][0], rel=1e-5)  # the same forward
    frozen = results[False][1]
    encoder = [n for n in frozen if "shine_meta_" in n or n.endswith("memory_embeddings")]
    m2p = [n for n in frozen if ".m2p." in n]
    assert encoder and m2p
    assert all(frozen[n] is None for n in encoder) and all(results[True][1][n] is not None for n in encoder)
    assert all(frozen[n] is not None for n in m2p) and any(frozen[n].abs().sum() > 0 for n in m2p)


def test_callback_ends_the_warm_start_after_freeze_encoder_steps():
    class Tuner:
        train_encoder = True

    class Model:
        base_model = Tuner()

    class State:
        global_step = 0

    model, state, callback = Model(), State(), ShineTrainingCallback(None, freeze_encoder_steps=2)
    seen = []
    for step in range(4):
        state.global_step = step
        callback.on_step_begin(None, state, None, model=model)
        seen.append(model.base_model.train_encoder)
    assert seen == [False, False, True, True]
    with pytest.raises(ValueError, match="freeze_encoder_steps"):
        ShineTrainingCallback(None, freeze_encoder_steps=-1)


def test_callback_stops_and_saves_after_max_train_minutes():
    from transformers import TrainerControl

    control = TrainerControl()
    ShineTrainingCallback(None, max_train_minutes=60).on_step_end(None, None, control)
    assert not control.should_training_stop
    ShineTrainingCallback(None, max_train_minutes=1e-9).on_step_end(None, None, control)
    assert control.should_training_stop and control.should_save
    with pytest.raises(ValueError, match="max_train_minutes"):
        ShineTrainingCallback(None, max_train_minutes=0)


def test_the_trainers_saved_adapter_has_a_shine_card_not_pefts_template(tokenizer, tmp_path):
    from huggingface_hub import ModelCard

    trainer, _ = train(tokenizer, tmp_path, steps=1)
    trainer.train()
    trainer.save_model(str(tmp_path / "adapter"))
    card = ModelCard.load(tmp_path / "adapter" / "README.md")
    assert "Model Card for Model ID" not in card.text and card.text.lstrip().startswith("# SHINE hypernetwork")
    assert card.text.index("import peft_shine") < card.text.index("PeftModel.from_pretrained")


def test_training_arguments_must_keep_context_columns(tmp_path):
    with pytest.raises(ValueError, match="remove_unused_columns=False"):
        check_training_arguments(TrainingArguments(output_dir=str(tmp_path), report_to="none"))


@pytest.mark.parametrize("script", ["pretrain", "instruct"])
def test_example_scripts_run_end_to_end(script, saved_base, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    module = __import__(script)
    if script == "pretrain":
        data = write_jsonl(tmp_path / "texts.jsonl", [{"text": qa["context"]} for qa in QA])
    else:
        data = write_jsonl(tmp_path / "qa.jsonl", QA)
    out = tmp_path / "out"
    module.main(
        [
            "--model_name_or_path",
            str(saved_base),
            "--train_file",
            f"{data},{data}",
            "--output_dir",
            str(out),
            "--max_steps",
            "2",
            "--per_device_train_batch_size",
            "2",
            "--lora_rank",
            "2",
            "--m2p_layers",
            "2",
            "--report_to",
            "none",
            "--save_strategy",
            "no",
            "--use_cpu",
            "true",
        ]
    )
    assert (out / "adapter_model.safetensors").exists() and (out / "tokenizer.json").exists()
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["peft_type"] == "SHINE" and config["lora_rank"] == 2
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert history and history[-1]["step"] == 2  # the log is kept even without checkpoints
    if script == "instruct":  # stage 2 starting from a stage-1 adapter
        module.main(
            [
                "--model_name_or_path",
                str(saved_base),
                "--train_file",
                str(data),
                "--adapter_name_or_path",
                str(out),
                "--output_dir",
                str(tmp_path / "stage2"),
                "--max_steps",
                "1",
                "--report_to",
                "none",
                "--save_strategy",
                "no",
                "--use_cpu",
                "true",
                "--curriculum_steps",
                "2",
            ]
        )
        assert (tmp_path / "stage2" / "adapter_model.safetensors").exists()


def instruct_args(saved_base, data, out, *extra: str) -> list[str]:
    """examples/instruct.py arguments for a one-step CPU run of the tiny model."""
    common = ["--model_name_or_path", str(saved_base), "--train_file", str(data), "--output_dir", str(out)]
    run = ["--max_steps", "1", "--per_device_train_batch_size", "2", "--report_to", "none", "--use_cpu", "true"]
    return [*common, *run, "--save_strategy", "no", *extra]


@pytest.mark.filterwarnings("ignore:Context .* truncated to max_context_tokens")  # the collator's, by design
def test_continuing_from_an_adapter_applies_the_context_options(saved_base, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    import instruct

    data = write_jsonl(tmp_path / "qa.jsonl", QA)
    instruct.main(instruct_args(saved_base, data, tmp_path / "stage1", "--lora_rank", "2", "--m2p_layers", "2"))
    assert json.loads((tmp_path / "stage1" / "adapter_config.json").read_text())["max_context_tokens"] == 2048
    stage2 = ["--adapter_name_or_path", str(tmp_path / "stage1"), "--max_context_tokens", "6"]
    with pytest.raises(ValueError, match="4 of 4 training items .* longer than max_context_tokens=6"):
        instruct.main(instruct_args(saved_base, data, tmp_path / "stage2", *stage2))  # before: options ignored
    assert not (tmp_path / "stage2").exists()  # checked when the data is loaded, before the Trainer starts
    with pytest.warns(UserWarning, match="4 of 4 training items .*='truncate' keeps their first 6 tokens"):
        instruct.main(instruct_args(saved_base, data, tmp_path / "stage2", *stage2, "--context_overflow", "truncate"))
    saved = json.loads((tmp_path / "stage2" / "adapter_config.json").read_text())
    assert (saved["max_context_tokens"], saved["context_overflow"], saved["lora_rank"]) == (6, "truncate", 2)
    with pytest.raises(ValueError, match="--lora_rank cannot change the SHINE adapter"):
        instruct.main(instruct_args(saved_base, data, tmp_path / "stage3", *stage2, "--lora_rank", "4"))


def test_a_cpu_run_of_the_example_script_pins_no_memory_and_warns_nothing_of_ours(saved_base, tmp_path, monkeypatch):
    import warnings

    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    import instruct

    data = write_jsonl(tmp_path / "qa.jsonl", QA)
    args = instruct_args(saved_base, data, tmp_path / "run", "--lora_rank", "2", "--m2p_layers", "2")
    args.remove("--use_cpu")
    args.remove("true")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        instruct.main(args)  # no GPU here: PyTorch warned about pin_memory on every run
    texts = [f"{w.category.__name__}: {w.message}" for w in caught]
    assert not [t for t in texts if "pin_memory" in t]
    assert not [t for t in texts if "gradient_checkpointing" in t and "is_gradient_checkpointing" not in t]
    assert all("is_gradient_checkpointing" in t for t in texts), texts  # PEFT's own call, upstream (docs/errors.md)


def test_example_scripts_take_a_dataset_by_name_like_transformers_scripts(saved_base, tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    import instruct
    import pretrain

    squad_like = [{**r, "answers": {"text": r["answers"], "answer_start": [0]}} for r in QA]  # the Hub's SQuAD form
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(squad_like), "validation": datasets.Dataset.from_list(squad_like[:2])}
    ).save_to_disk(tmp_path / "squad")
    args = instruct_args(saved_base, "unused", tmp_path / "out", "--lora_rank", "2", "--m2p_layers", "2")
    by_name = [a for a in args if a not in ("--train_file", "unused")]
    instruct.main([*by_name, "--dataset_name", str(tmp_path / "squad"), "--eval_split", "validation"])
    assert (tmp_path / "out" / "adapter_model.safetensors").is_file()
    datasets.Dataset.from_list([{"text": r["context"]} for r in QA]).save_to_disk(tmp_path / "texts")
    pretrain.main([*by_name, "--dataset_name", str(tmp_path / "texts"), "--output_dir", str(tmp_path / "pre")])
    assert (tmp_path / "pre" / "adapter_model.safetensors").is_file()
    with pytest.raises(ValueError, match="--train_file FILE.* or with --dataset_name .*; both was given"):
        instruct.main([*args, "--dataset_name", str(tmp_path / "squad")])
    with pytest.raises(ValueError, match="neither was given"):
        instruct.main(by_name)
    with pytest.raises(FileNotFoundError, match="not a `datasets` folder"):
        instruct.main([*by_name, "--dataset_name", str(tmp_path / "no-such-folder")])


def test_prepare_data_reads_squad_and_babi_as_published(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "examples" / "default_model"))
    import prepare_data

    official = {
        "data": [
            {
                "title": "Lighthouse",
                "paragraphs": [
                    {
                        "context": QA[0]["context"],
                        "qas": [
                            {
                                "id": "q1",
                                "question": "Who built it?",
                                "answers": [{"text": "Clara Vennet", "answer_start": 36}] * 2,
                            }
                        ],
                    }
                ],
            }
        ]
    }
    (tmp_path / "train-v1.1.json").write_text(json.dumps(official))
    squad = prepare_data.squad_records(str(tmp_path / "train-v1.1.json"))
    assert squad == [
        {
            "source": "squad-v1.1/train",
            "context": QA[0]["context"],
            "question": "Who built it?",
            "answers": ["Clara Vennet"],
            "id": "q1",
            "title": "Lighthouse",
        }
    ]
    babi = tmp_path / "en"
    babi.mkdir()
    (babi / "qa1_single-supporting-fact_train.txt").write_text(
        "1 Mary moved to the bathroom.\n2 John went to the hallway.\n3 Where is Mary? \tbathroom\t1\n"
        "4 Daniel went back to the hallway.\n5 Where is Daniel? \thallway\t4\n"
        "1 Sandra left.\n2 Where is Sandra?\tout\t1\n"
    )
    (babi / "qa1_single-supporting-fact_test.txt").write_text("1 Not read.\n")
    records = prepare_data.babi_records(str(babi))
    assert [(r["context"], r["question"], r["answers"], r["supporting_facts"]) for r in records] == [
        ("Mary moved to the bathroom.\nJohn went to the hallway.", "Where is Mary?", ["bathroom"], [0]),
        (
            "Mary moved to the bathroom.\nJohn went to the hallway.\nDaniel went back to the hallway.",
            "Where is Daniel?",
            ["hallway"],
            [2],
        ),
        ("Sandra left.", "Where is Sandra?", ["out"], [0]),
    ]
    assert records[0]["id"] == "babi-en-qa1-train-s0000-l03" and records[0]["task"] == 1  # as in shared/data
    write_jsonl(tmp_path / "babi.jsonl", records)
    assert prepare_data.babi_records(str(tmp_path / "babi.jsonl")) == records


def test_evidence_token_counts_bound_every_context_the_collator_sees(tokenizer):
    records = [*QA, {**QA[0], "context": QA[0]["context"] * 3, "question": "Again?"}]
    dataset = InstructDataset(records, tokenizer, mode="single", num_distractors=2, curriculum_steps=4)
    bounds = dataset.evidence_token_counts()
    lengths = [len(tokenizer(r["context"], add_special_tokens=False)["input_ids"]) for r in records]
    assert bounds[0] > lengths[0] + sorted(lengths)[-2]  # gold + the two longest others + separators
    for progress in (0.0, 0.5, 1.0):
        dataset.set_progress(progress)
        assert all(len(dataset[i]["context_input_ids"]) <= bound for i, bound in enumerate(bounds))


@pytest.mark.parametrize("launcher", ["torchrun", "accelerate"])
def test_the_documented_launch_on_cpu_is_one_data_parallel_run(launcher, saved_base, tmp_path):
    """`torchrun --nproc_per_node 2 examples/instruct.py ...` and `accelerate launch --config_file
    examples/accelerate/cpu_ddp.yaml examples/instruct.py ...` without --use_cpu on a machine without a GPU: one
    run (the global batch spans both processes) whose weights are identical on both ranks and have moved. Before:
    two independent trainings into one output_dir."""
    if launcher == "torchrun":
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533"]
    else:
        config = ROOT / "examples" / "accelerate" / "cpu_ddp.yaml"
        command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config)]
        command += ["--main_process_port", "29534"]
    data = write_jsonl(tmp_path / "qa.jsonl", QA)  # 4 contexts: one step of 2 per process is one epoch
    script = [str(ROOT / "tests" / "example_ddp_worker.py"), *instruct_args(saved_base, data, tmp_path / "run")]
    script = [a for a in script if a not in ("--use_cpu", "true")]
    script += ["--lora_rank", "2", "--m2p_layers", "2", "--logging_steps", "1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("ACCELERATE_USE_CPU", None)
    result = subprocess.run([*command, *script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    if torch.cuda.is_available():
        pytest.skip("a GPU machine trains on its GPUs; this checks the CPU fallback")
    runs = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert runs == [{"parallel_mode": "distributed", "world_size": 2}] * 2
    first = [e for e in json.loads((tmp_path / "run" / "trainer_state.json").read_text())["log_history"] if "loss" in e]
    assert first[0]["epoch"] == 1.0 and first[0]["grad_norm"] > 0  # 4 contexts in one step: 2 per process
    ranks = [load_file(tmp_path / f"rank{r}.safetensors") for r in (0, 1)]
    assert ranks[0].keys() == ranks[1].keys() and all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])


def test_torchrun_two_processes_keep_every_trainable_tensor_identical(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29517",
        str(ROOT / "tests" / "ddp_worker.py"),
        str(tmp_path),
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    after = [load_file(str(tmp_path / f"after{rank}.safetensors")) for rank in (0, 1)]
    before = load_file(str(tmp_path / "before0.safetensors"))
    seen = [json.loads((tmp_path / f"seen{rank}.json").read_text()) for rank in (0, 1)]
    assert seen[0]["world_size"] == 2 and seen[0]["seen"] != seen[1]["seen"]  # different data per rank
    names = list(after[0])
    assert any("memory_embeddings" in n for n in names) and any("shine_meta_A" in n for n in names)
    assert any(".m2p." in n for n in names)
    for name in names:
        assert torch.equal(after[0][name], after[1][name]), name
        assert not torch.equal(after[0][name], before[name]), name


def test_shine_arguments_cannot_drift_from_shine_config():
    """ShineArguments is generated from ShineConfig: same names and help, and a new adapter from no flags is exactly
    ShineConfig's defaults; every user-set ShineConfig field is on the command line or deliberately left off."""
    import dataclasses

    from peft import PeftConfig
    from transformers import HfArgumentParser

    from peft_shine import ShineConfig
    from peft_shine.training import ARGUMENT_TYPES, ShineArguments

    config_fields = {f.name: f for f in dataclasses.fields(ShineConfig)}
    for field in dataclasses.fields(ShineArguments):
        assert field.metadata["help"].startswith(config_fields[field.name].metadata["help"])
    (parsed,) = HfArgumentParser(ShineArguments).parse_args_into_dataclasses(args=[])
    new, default = parsed.to_config(), ShineConfig()
    assert all(getattr(new, name) == getattr(default, name) for name in ARGUMENT_TYPES)
    left_off = {  # set per absorb (AbsorbOptions), recorded from the base, or PEFT's own
        "exclude_modules",
        "layers_to_transform",
        "layers_pattern",
        "chunk_combination",
        "chunk_overlap_tokens",
        "chunk_batch_size",
        "max_lora_rank",
        "init_weights",
        "base_model_type",
        "base_hidden_size",
        "base_num_layers",
        "target_module_shapes",
        "base_model_weights",
    }
    own = {f.name for f in dataclasses.fields(ShineConfig)} - {f.name for f in dataclasses.fields(PeftConfig)}
    assert own - left_off == set(ARGUMENT_TYPES)
