"""The `peft-shine` console script on a tiny model (absorb, ask, eval) and the demo on the embedded default."""

import json

import pytest
import torch
from peft import PeftConfig
from safetensors.torch import load_file

from peft_shine.cli import main
from tests.helpers import CONTEXTS


def test_absorb_writes_plain_loras_and_ask_answers_from_them(tmp_path, saved_base, shine_adapter, capsys):
    docs = []
    for i, text in enumerate(CONTEXTS[:2]):
        docs.append(tmp_path / f"doc{i}.txt")
        docs[-1].write_text(text, encoding="utf-8")
    out = tmp_path / "loras"
    main(["absorb", *map(str, docs), "--output", str(out), "--base", str(saved_base), "--adapter", str(shine_adapter)])
    for i in range(2):
        assert PeftConfig.from_pretrained(out / f"doc{i}").peft_type == "LORA"
    capsys.readouterr()
    main(["ask", "Who built it?", "--adapter", str(out / "doc0"), "--base", str(saved_base), "--max-new-tokens", "3"])
    assert capsys.readouterr().out.endswith("\n")  # printed an answer line
    main(
        [
            "ask",
            "Who?",
            "--context-file",
            str(docs[0]),
            "--base",
            str(saved_base),
            "--adapter",
            str(shine_adapter),
            "--max-new-tokens",
            "3",
        ]
    )
    with pytest.raises(SystemExit, match="context-file"):
        main(["ask", "Who?", "--adapter", str(shine_adapter), "--base", str(saved_base)])


def test_absorb_rejects_unreadable_files(tmp_path, saved_base, shine_adapter):
    binary = tmp_path / "latin1.txt"
    binary.write_bytes("caf\xe9".encode("latin-1"))
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n", encoding="utf-8")
    common = ["--output", str(tmp_path / "o"), "--base", str(saved_base), "--adapter", str(shine_adapter)]
    with pytest.raises(SystemExit, match="not UTF-8"):
        main(["absorb", str(binary), *common])
    with pytest.raises(SystemExit, match="empty"):
        main(["absorb", str(empty), *common])
    with pytest.raises(SystemExit, match="no such file"):
        main(["absorb", str(tmp_path / "missing.txt"), *common])


def test_eval_runs_all_four_methods_and_writes_results(tmp_path, saved_base, shine_adapter):
    records = [
        {"id": str(i), "context": CONTEXTS[i % 2], "question": q, "answers": [a]}
        for i, (q, a) in enumerate(
            [
                ("Who built it?", "Clara Vennet"),
                ("Where is Mary?", "kitchen"),
                ("When was it built?", "1871"),
                ("Who has the apple?", "John"),
            ]
        )
    ]
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    output = tmp_path / "results.json"
    main(
        [
            "eval",
            "--data",
            str(data),
            "--methods",
            "none,icl,sft,shine",
            "--output",
            str(output),
            "--base",
            str(saved_base),
            "--adapter",
            str(shine_adapter),
            "--sft-epochs",
            "1",
            "--max-new-tokens",
            "3",
        ]
    )
    results = json.loads(output.read_text())
    assert results["num_records"] == 4 and set(results["methods"]) == {"none", "icl", "sft", "shine"}
    for method in results["methods"].values():
        assert len(method["predictions"]) == 4 and 0.0 <= method["f1"]["mean"] <= 1.0
        assert method["f1"]["ci_low"] <= method["f1"]["mean"] <= method["f1"]["ci_high"]
    assert results["methods"]["sft"]["adapt_seconds_per_context"] > 0
    assert output.with_suffix(".md").exists()


def test_demo_runs_end_to_end_on_the_default_model(capsys):
    main(["demo", "--num-questions", "1", "--max-new-tokens", "4"])
    out = capsys.readouterr().out
    assert "absorbed in" in out and "SHINE (absorbed)" in out and "document in prompt" in out


def test_absorb_compose_chunk_combination_mean_halves_the_sum_of_two_documents(tmp_path, saved_base, shine_adapter):
    docs = []
    for i, text in enumerate(CONTEXTS[:2]):
        docs.append(tmp_path / f"doc{i}.txt")
        docs[-1].write_text(text, encoding="utf-8")
    weights = {}
    for combination in ("mean", "sum"):
        out = tmp_path / combination
        common = ["--base", str(saved_base), "--adapter", str(shine_adapter), "--chunk-combination", combination]
        main(["absorb", *map(str, docs), "--output", str(out), "--compose", *common])
        weights[combination] = load_file(out / "adapter_model.safetensors")
    assert weights["mean"].keys() == weights["sum"].keys()
    for name, tensor in weights["sum"].items():
        expected = tensor / 2 if "lora_B" in name else tensor  # the weights scale B
        torch.testing.assert_close(weights["mean"][name], expected)
