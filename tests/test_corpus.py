"""`absorb_corpus` on a tiny model: records and bad records, the batch plan, batched vs lone adapters, the folder and
shard formats and what serving engines read from them, resuming (rerun, changed text, SIGKILL), several processes
(torchrun with gloo-free file merging, and ranks run one after the other), and the `absorb-corpus` command."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from peft import PeftModel
from safetensors import safe_open
from safetensors.torch import load_file

import peft_shine.corpus.storage as storage
from peft_shine import absorb_corpus, load_absorbed
from peft_shine.cli import main
from peft_shine.corpus import (
    CorpusReader,
    CorpusRecordError,
    iter_absorbed,
    padding_share,
    plan_batches,
    read_corpus,
)
from tests.corpus_worker import BATCH_SIZE, SHARD_SIZE, WINDOW, build_corpus_model
from tests.helpers import CONTEXTS, build_model, write_jsonl

ROOT = Path(__file__).resolve().parent.parent
WORKER = ROOT / "tests" / "corpus_worker.py"
SENTENCES = [
    "The lighthouse on Marrow Point was built in 1871.",
    "Clara Vennet designed its lamp.",
    "Mary went to the kitchen.",
    "John picked up the apple.",
    "The report was signed by Ingrid Solberg.",
    "Sandra travelled to the garden.",
]
# 12 documents from 1 to 9 sentences: the longer ones pass max_context_tokens=48 and are chunked (rank 4, not 2)
TEXTS = [" ".join(SENTENCES[(i + j) % len(SENTENCES)] for j in range(1 + (i * 5) % 9)) for i in range(12)]
RECORDS = [{"id": f"doc-{i:02d}", "text": text} for i, text in enumerate(TEXTS)]
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "shine_context.json")
OPTIONS = dict(batch_size=BATCH_SIZE, window=WINDOW, shard_size=SHARD_SIZE, progress=False)


@pytest.fixture(scope="module")
def model(tokenizer):
    return build_corpus_model(tokenizer)


@pytest.fixture
def one_thread():
    """Run in-process absorbs single-threaded, like the worker processes, so results can be compared bit for bit."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def read_index(directory: Path) -> list[dict]:
    return [json.loads(line) for line in (directory / "index.jsonl").read_text(encoding="utf-8").splitlines()]


def folder_contents(directory: Path) -> dict[str, dict[str, object]]:
    """Per document: the bytes of its adapter_config.json (written with target_modules sorted, so identical across
    processes), tensors and shine_context.json."""
    contents = {}
    for entry in read_index(directory):
        if entry["status"] == "ok":
            folder = directory / entry["id"]
            contents[entry["id"]] = {name: (folder / name).read_bytes() for name in ADAPTER_FILES}
    return contents


def assert_same_factors(found, expected, **tolerance) -> None:
    assert found.factors.keys() == expected.factors.keys()
    for key, (a, b) in expected.factors.items():
        if tolerance:
            torch.testing.assert_close(found.factors[key][0], a, **tolerance)
            torch.testing.assert_close(found.factors[key][1], b, **tolerance)
        else:
            assert torch.equal(found.factors[key][0], a) and torch.equal(found.factors[key][1], b), key


# ----------------------------------------------------------------------------------------------------------------------
# Records


def test_plan_batches_sorts_each_window_by_length_and_covers_every_document():
    counts = [5, 1, 4, 2, 3, 9, 7, 8, 6]
    plan = plan_batches(counts, batch_size=2, window=4)
    assert plan == [[1, 3], [2, 0], [4, 6], [7, 5], [8]]
    assert sorted(i for batch in plan for i in batch) == list(range(len(counts)))
    in_order = [list(range(i, min(i + 2, len(counts)))) for i in range(0, len(counts), 2)]
    assert padding_share(counts, plan) < padding_share(counts, in_order)
    assert padding_share([3, 3], [[0, 1]]) == 0.0


@pytest.mark.parametrize(
    "line, problem",
    [
        (b'{"id": "b"}', "field 'text' is missing"),
        (b'{"id": "b", "text": "   "}', "field 'text' is empty"),
        (b'{"id": "a", "text": "again"}', "duplicate id 'a' (first seen at"),
        (b'{"id": "b", "text": "caf\xe9"}', "not UTF-8 text"),
        (b'{"id": "b", "text": ', "not valid JSON"),
        (b'{"text": "no id"}', "id field 'id' is missing"),
        (b'{"id": "a/b", "text": "x"}', "contains '/'"),
        (b'{"id": "index.jsonl", "text": "x"}', "a name the output folder uses"),
    ],
)
def test_a_bad_record_stops_with_its_file_and_line_or_is_skipped(tmp_path, line, problem):
    path = tmp_path / "docs.jsonl"
    path.write_bytes(b'{"id": "a", "text": "first"}\n' + line + b'\n{"id": "c", "text": "third"}\n')
    with pytest.raises(CorpusRecordError, match=f"^{re.escape(str(path))}, line 2: ") as error:
        read_corpus(path)
    assert problem in str(error.value)
    documents, skipped = read_corpus(path, on_error="skip")
    assert [d.id for d in documents] == ["a", "c"] and [d.where for d in documents][1] == f"{path}, line 3"
    assert len(skipped) == 1 and skipped[0].where == f"{path}, line 2" and problem in skipped[0].reason


def test_gzip_files_datasets_folders_and_hub_ids_give_the_same_documents(tmp_path, monkeypatch):
    import datasets

    expected = read_corpus(write_jsonl(tmp_path / "docs.jsonl", RECORDS))[0]
    assert read_corpus(write_jsonl(tmp_path / "docs.jsonl.gz", RECORDS))[0] == [
        d.__class__(d.id, d.text, d.where.replace("docs.jsonl", "docs.jsonl.gz"), d.sha256) for d in expected
    ]
    renamed = [{"name": r["id"], "body": r["text"]} for r in RECORDS]
    datasets.DatasetDict({"train": datasets.Dataset.from_list(renamed)}).save_to_disk(str(tmp_path / "ds"))
    from_folder = read_corpus(tmp_path / "ds", text_field="body", id_field="name", split="train")[0]
    assert [(d.id, d.text, d.sha256) for d in from_folder] == [(d.id, d.text, d.sha256) for d in expected]
    calls = []

    def fake_load_dataset(name, split=None):
        calls.append((name, split))
        return datasets.Dataset.from_list(RECORDS)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    assert [d.id for d in read_corpus("someone/manuals", split="validation")[0]] == [d.id for d in expected]
    assert calls == [("someone/manuals", "validation")]
    with pytest.raises(FileNotFoundError, match="no such JSON Lines file"):
        read_corpus(tmp_path / "missing.jsonl")


def test_stop_on_a_bad_record_writes_nothing_and_skip_lists_it_in_the_index(tmp_path, model):
    data = tmp_path / "docs.jsonl"
    data.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in RECORDS[:3]) + b'{"id": "doc-00", "text": "x"}\n')
    with pytest.raises(CorpusRecordError, match=re.escape(f"{data}, line 4: duplicate id 'doc-00'")):
        absorb_corpus(model, data, tmp_path / "out", **OPTIONS)
    assert not (tmp_path / "out").exists()
    summary = absorb_corpus(model, data, tmp_path / "out", on_error="skip", **OPTIONS)
    index = read_index(tmp_path / "out")
    assert [e["id"] for e in index] == ["doc-00", "doc-01", "doc-02", "doc-00"]
    assert [e["status"] for e in index] == ["ok", "ok", "ok", "skipped"]
    assert index[3]["where"] == f"{data}, line 4" and "duplicate id" in index[3]["reason"]
    assert summary.absorbed == 3 and len(summary.skipped) == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "corpus.json",
        "doc-00",
        "doc-01",
        "doc-02",
        "index.jsonl",
    ]


# ----------------------------------------------------------------------------------------------------------------------
# Adapters and formats


def test_batched_adapters_equal_lone_absorbs_up_to_float_rounding(model):
    # A document absorbed in a padded batch is not bit-identical to it absorbed alone: left padding changes the shape
    # of the encode pass's matmuls and so their float summation order. Measured: <= 2e-8 on factors of ~0.08, i.e.
    # a few float32 ulps; the tolerance below is 5x that and 1000x below the factors' size.
    documents = read_corpus(RECORDS)[0]
    batched = list(iter_absorbed(model, documents, batch_size=4))
    assert sorted(item.document.id for item in batched) == [d.id for d in documents]
    ranks = set()
    for item in batched:
        alone = model.absorb_context(item.document.text)
        assert item.absorbed.num_chunks == alone.num_chunks and item.absorbed.ranks == alone.ranks
        assert_same_factors(item.absorbed, alone, rtol=0, atol=1e-7)
        ranks.add(alone.rank)
    assert min(ranks) == 2 and max(ranks) > 2  # single-chunk and chunked documents (rank 2 per chunk) were mixed


def test_each_folder_is_exactly_save_pretrained_plus_a_model_card(tmp_path, model):
    summary = absorb_corpus(model, RECORDS[:4], tmp_path / "out", batch_size=1, base_model="org/tiny-base")
    assert summary.absorbed == 4 and summary.merged
    mask = os.umask(0)
    os.umask(mask)
    for record in RECORDS[:4]:
        folder = tmp_path / "out" / record["id"]
        assert sorted(p.name for p in folder.iterdir()) == sorted([*ADAPTER_FILES, "README.md"])
        # readable by a server running as another user, as the umask allows (not private like temporary files)
        assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~mask
        assert {stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()} == {0o666 & ~mask}
        alone = model.absorb_context(record["text"])
        alone.base_model_name_or_path = "org/tiny-base"
        alone.save_pretrained(tmp_path / "alone")
        for name in ADAPTER_FILES:  # batch_size=1: the same computation, so the same bytes
            assert (folder / name).read_bytes() == (tmp_path / "alone" / name).read_bytes(), name
        card = ModelCard.load(folder / "README.md")
        assert card.data.library_name == "peft" and card.data.base_model == "org/tiny-base"
        assert {"lora", "shine", "peft-shine"} <= set(card.data.tags)
        assert card.data.shine_document["sha256"] == read_corpus([record])[0][0].sha256
        assert record["text"] not in card.content


# The adapter format that vLLM (`PEFTHelper` + `LoRAModel.from_local_checkpoint`), TGI (`LoraConfig.load` +
# `map_weights_for_model`) and PEFT read; docs/serving.md describes it.
ENGINE_CONFIG = {"peft_type": "LORA", "bias": "none", "use_dora": False, "use_rslora": False, "fan_in_fan_out": False}


def test_exported_folders_have_the_format_serving_engines_read(tmp_path, model, tokenizer):
    out = tmp_path / "out"
    absorb_corpus(model, RECORDS, out, base_model="org/tiny-base", **OPTIONS)
    base = build_model("llama", len(tokenizer))
    linear = {name: module for name, module in base.named_modules() if isinstance(module, torch.nn.Linear)}
    for entry in read_index(out):
        folder = out / entry["id"]
        config = json.loads((folder / "adapter_config.json").read_text())
        assert {key: config[key] for key in ENGINE_CONFIG} == ENGINE_CONFIG
        assert config["modules_to_save"] is None and config["base_model_name_or_path"] == "org/tiny-base"
        rank = config["r"]
        assert rank == config["lora_alpha"] == entry["lora_rank"] and rank <= 512  # vLLM's largest --max-lora-rank
        paths = sorted(config["target_modules"])
        assert paths == sorted(model.base_model._target_keys) and all(p in linear for p in paths)
        with safe_open(str(folder / "adapter_model.safetensors"), framework="pt") as tensors:
            assert tensors.metadata() == {"format": "pt"}
            names = set(tensors.keys())
            assert names == {f"base_model.model.{p}.lora_{ab}.weight" for p in paths for ab in "AB"}
            for path in paths:
                lora_a = tensors.get_tensor(f"base_model.model.{path}.lora_A.weight")
                lora_b = tensors.get_tensor(f"base_model.model.{path}.lora_B.weight")
                assert lora_a.shape == (rank, linear[path].in_features)
                assert lora_b.shape == (linear[path].out_features, rank)
                assert lora_a.dtype == lora_b.dtype == linear[path].weight.dtype == torch.float32
                assert lora_a.is_contiguous() and lora_b.is_contiguous()


def test_peft_load_adapter_and_set_adapter_serve_two_absorbed_documents(tmp_path, model, tokenizer):
    out = tmp_path / "out"
    absorb_corpus(model, RECORDS[:6], out, **OPTIONS)
    ids = ["doc-01", "doc-04"]  # one single-chunk and one chunked document
    served = PeftModel.from_pretrained(build_model("llama", len(tokenizer)), out / ids[0], adapter_name=ids[0])
    served.load_adapter(out / ids[1], adapter_name=ids[1])
    prompt = tokenizer(["Where did Mary go?"], return_tensors="pt")
    reader = CorpusReader(out)
    for doc_id in ids:
        served.set_adapter(doc_id)
        model.use_context(reader.load(doc_id))
        torch.testing.assert_close(served(**prompt).logits, model(**prompt).logits, rtol=1e-5, atol=1e-6)
    model.forget()


def test_shards_hold_every_adapter_and_load_absorbed_reads_only_one(tmp_path, model, monkeypatch):
    absorb_corpus(model, RECORDS, tmp_path / "folders", **OPTIONS)
    absorb_corpus(model, RECORDS, tmp_path / "shards", format="shards", **OPTIONS)
    shard_files = sorted((tmp_path / "shards" / "shards").iterdir())
    mask = os.umask(0)
    os.umask(mask)
    assert {stat.S_IMODE(p.stat().st_mode) for p in [*shard_files, tmp_path / "shards" / "index.jsonl"]} == {
        0o666 & ~mask
    }
    assert [p.name for p in shard_files] == [f"shard-0000{k}.safetensors" for k in range(3)]  # 12 documents, 5 each
    metadata, ids = storage.read_shard_header(shard_files[1])
    assert ids == [r["id"] for r in RECORDS[5:10]]
    assert json.loads(metadata["adapter:doc-07"])["sha256"] == read_corpus(RECORDS)[0][7].sha256
    folder_state = load_file(str(tmp_path / "folders" / "doc-07" / "adapter_model.safetensors"))
    shard_state = load_file(str(shard_files[1]))
    assert {f"doc-07::{name}" for name in folder_state} <= set(shard_state)
    assert len(shard_state) == 5 * len(folder_state)

    requested = []

    class SpyingOpen:
        def __init__(self, *args, **kwargs):
            self.inner = safe_open(*args, **kwargs)

        def __enter__(self):
            self.handle = self.inner.__enter__()
            return self

        def __exit__(self, *exc):
            return self.inner.__exit__(*exc)

        def metadata(self):
            return self.handle.metadata()

        def get_tensor(self, name):
            requested.append(name)
            return self.handle.get_tensor(name)

    monkeypatch.setattr(storage, "safe_open", SpyingOpen)
    from_shard = load_absorbed(tmp_path / "shards", "doc-07")
    assert sorted(requested) == sorted(f"doc-07::{name}" for name in folder_state)
    monkeypatch.undo()
    # window = shard size: both formats planned the same batches, so the adapters are bit-identical
    assert_same_factors(from_shard, load_absorbed(tmp_path / "folders", "doc-07"))
    assert from_shard.num_chunks == [read_index(tmp_path / "folders")[7]["chunks"]]
    model.use_context(from_shard)
    model.forget()
    with pytest.raises(KeyError, match="no-such-id"):
        load_absorbed(tmp_path / "shards", "no-such-id")


# ----------------------------------------------------------------------------------------------------------------------
# Resuming


@pytest.mark.parametrize("format", ["folders", "shards"])
def test_a_rerun_skips_finished_documents_and_redoes_changed_ones(tmp_path, model, format):
    out = tmp_path / "out"
    first = absorb_corpus(model, RECORDS, out, format=format, **OPTIONS)
    files = sorted(p for p in out.rglob("*.safetensors"))
    stamps = {p: p.stat().st_mtime_ns for p in files}
    again = absorb_corpus(model, RECORDS, out, format=format, **OPTIONS)
    assert (first.absorbed, first.reused, again.absorbed, again.reused) == (12, 0, 0, 12)
    assert {p: p.stat().st_mtime_ns for p in files} == stamps  # nothing rewritten

    changed = [dict(r) for r in RECORDS]
    changed[7]["text"] = "The harbour wall was finished in 1903."
    third = absorb_corpus(model, changed, out, format=format, **OPTIONS)
    assert (third.absorbed, third.reused) == (1, 11)
    rewritten = {p for p in files if p.stat().st_mtime_ns != stamps[p]}
    expected = out / ("shards/shard-00001.safetensors" if format == "shards" else "doc-07/adapter_model.safetensors")
    assert rewritten == {expected}
    assert read_index(out)[7]["sha256"] == read_corpus(changed)[0][7].sha256
    assert_same_factors(load_absorbed(out, "doc-07"), model.absorb_context(changed[7]["text"]), rtol=0, atol=1e-7)
    assert not list(out.glob(".*"))  # no progress files or temporary folders left


def test_a_killed_run_resumes_to_the_outputs_of_an_uninterrupted_one(tmp_path, model, one_thread):
    data = write_jsonl(tmp_path / "docs.jsonl", RECORDS)
    absorb_corpus(model, data, tmp_path / "full" / "folders", **OPTIONS)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(WORKER), str(data), str(tmp_path / "killed"), "--delay", "0.4"]
    progress = tmp_path / "killed" / "folders" / ".parts" / "rank-00000.jsonl"
    with open(tmp_path / "stderr.txt", "w") as stderr:
        process = subprocess.Popen(command, env=env, stderr=stderr)
        try:
            deadline = time.monotonic() + 120
            while not (progress.exists() and len(progress.read_text().splitlines()) >= 4):
                assert process.poll() is None, (tmp_path / "stderr.txt").read_text()[-3000:]
                assert time.monotonic() < deadline, "the run did not write 4 documents in time"
                time.sleep(0.05)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
    assert process.returncode == -signal.SIGKILL
    killed = tmp_path / "killed" / "folders"
    assert not (killed / "index.jsonl").exists()
    resumed = absorb_corpus(model, data, killed, **OPTIONS)
    assert 4 <= resumed.reused < 12 and resumed.reused + resumed.absorbed == 12
    assert folder_contents(killed) == folder_contents(tmp_path / "full" / "folders")
    strip = ("process_rank", "seconds", "finished_at")
    assert [{k: v for k, v in e.items() if k not in strip} for e in read_index(killed)] == [
        {k: v for k, v in e.items() if k not in strip} for e in read_index(tmp_path / "full" / "folders")
    ]
    assert not list(killed.glob(".*"))


def test_a_folder_left_by_a_run_killed_at_its_first_write_is_resumed_but_a_foreign_folder_is_refused(tmp_path, model):
    out = tmp_path / "out"
    (out / ".tmp-abc123" / "adapter").mkdir(parents=True)  # what a kill inside the first write leaves
    assert absorb_corpus(model, RECORDS[:3], out, **OPTIONS).absorbed == 3
    assert sorted(p.name for p in out.iterdir()) == ["corpus.json", "doc-00", "doc-01", "doc-02", "index.jsonl"]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not an absorb_corpus output"):
        absorb_corpus(model, RECORDS[:3], tmp_path / "mine", **OPTIONS)
    with pytest.raises(ValueError, match="holds a 'folders' corpus"):
        absorb_corpus(model, RECORDS[:3], out, format="shards", **OPTIONS)
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]


# ----------------------------------------------------------------------------------------------------------------------
# Several processes


def test_torchrun_two_processes_write_every_document_once_equal_to_one_process(tmp_path, model, one_thread):
    data = write_jsonl(tmp_path / "docs.jsonl", RECORDS)
    for format in ("folders", "shards"):
        absorb_corpus(model, data, tmp_path / "single" / format, format=format, **OPTIONS)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [
        *(sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531"),
        *(str(WORKER), str(data), str(tmp_path / "two"), "--format", "folders", "--format", "shards"),
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    single, two = tmp_path / "single" / "folders", tmp_path / "two" / "folders"
    index = read_index(two)
    assert [e["id"] for e in index] == [r["id"] for r in RECORDS]  # every document once, in corpus order
    assert {e["process_rank"] for e in index} == {0, 1}
    assert folder_contents(two) == folder_contents(single)
    shard_index = read_index(tmp_path / "two" / "shards")
    assert [e["process_rank"] for e in shard_index] == [0] * 5 + [1] * 5 + [0] * 2  # shard k on rank k % 2
    for shard in ("shard-00000", "shard-00001", "shard-00002"):
        found = load_file(str(tmp_path / "two" / "shards" / "shards" / f"{shard}.safetensors"))
        expected = load_file(str(tmp_path / "single" / "shards" / "shards" / f"{shard}.safetensors"))
        assert found.keys() == expected.keys() and all(torch.equal(found[k], expected[k]) for k in found)


def test_ranks_without_torch_distributed_share_the_work_and_rank_0_merges(tmp_path, model):
    out = tmp_path / "out"
    with pytest.raises(TimeoutError, match=r"ranks \[1\] of 2"):
        absorb_corpus(model, RECORDS, out, rank=0, world_size=2, merge_timeout=0.2, **OPTIONS)
    second = absorb_corpus(model, RECORDS, out, rank=1, world_size=2, **OPTIONS)
    assert not second.merged and not (out / "index.jsonl").exists()
    first = absorb_corpus(model, RECORDS, out, rank=0, world_size=2, **OPTIONS)
    assert first.merged and first.absorbed == 0 and first.reused + second.absorbed == 12
    index = read_index(out)
    assert [e["id"] for e in index] == [r["id"] for r in RECORDS] and {e["process_rank"] for e in index} == {0, 1}


# ----------------------------------------------------------------------------------------------------------------------
# Command line


def test_absorb_corpus_command(tmp_path, saved_base, shine_adapter, capsys):
    records = [{"key": f"c{i}", "body": text} for i, text in enumerate(CONTEXTS)]
    data = tmp_path / "docs.jsonl"
    data.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in records) + b'{"key": "bad", "body": ""}\n')
    common = ["--data", str(data), "--text-field", "body", "--id-field", "key", "--base", str(saved_base)]
    common += ["--adapter", str(shine_adapter), "--batch-size", "2"]
    with pytest.raises(SystemExit, match=re.escape(f"{data}, line 4: field 'body' is empty")):
        main(["absorb-corpus", *common, "--output", str(tmp_path / "stopped")])
    assert not (tmp_path / "stopped").exists()
    main(["absorb-corpus", *common, "--output", str(tmp_path / "out"), "--on-error", "skip", "--max-rank", "1"])
    printed = capsys.readouterr().out
    assert "3 documents absorbed" in printed and "1 record skipped" in printed
    index = read_index(tmp_path / "out")
    assert [(e["id"], e["status"]) for e in index] == [("c0", "ok"), ("c1", "ok"), ("c2", "ok"), ("bad", "skipped")]
    assert all(e["lora_rank"] == 1 for e in index[:3])
    assert json.loads((tmp_path / "out" / "c1" / "adapter_config.json").read_text())["r"] == 1
    main(["absorb-corpus", *common, "--output", str(tmp_path / "packed"), "--on-error", "skip", "--format", "shards"])
    assert load_absorbed(tmp_path / "packed", "c2").rank == 2


def test_corpus_benchmark_measures_every_mode_and_the_full_run(tmp_path, saved_base, shine_adapter):
    from benchmarks.corpus.run import main as benchmark

    data = write_jsonl(tmp_path / "docs.jsonl", RECORDS)
    common = ["--data", str(data), "--base", str(saved_base), "--adapter", str(shine_adapter), "--limit", "8"]
    benchmark([*common, "--batch_size", "4", "--repeats", "1", "--output_dir", str(tmp_path / "results")])
    results = json.loads((tmp_path / "results" / "results.json").read_text())
    modes = {row["mode"]: row for row in results["modes"]}
    assert list(modes) == ["one at a time", "batch 4, input order", "batch 4, sorted by length"]
    assert modes["one at a time"]["padding_share"] == 0 and modes["one at a time"]["speedup"] == 1
    assert modes["batch 4, sorted by length"]["padding_share"] < modes["batch 4, input order"]["padding_share"]
    assert results["absorb_corpus"]["documents"] == results["documents"] == 8
    agreement = results["batched_vs_one_at_a_time"]
    assert agreement["max_relative_update_error"] < 1e-5 and 0 < agreement["bit_identical_documents"] < 8
    assert {"cpu_model", "load_average_before", "command"} <= results["machine"].keys()
    assert "documents/s" in (tmp_path / "results" / "results.md").read_text()
