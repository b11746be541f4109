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


def test_version_and_a_help_text_on_every_option_of_every_command(capsys):
    import argparse

    from peft_shine import __version__
    from peft_shine.cli import build_parser

    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"peft-shine {__version__}"
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert all(name in parser.description for name in commands)  # the description names every command
    missing = [
        f"{name} {action.option_strings or action.dest}"
        for name, command in commands.items()
        for action in command._actions
        if not isinstance(action, argparse._HelpAction) and not action.help
    ]
    assert not missing
    for name in ("eval", "absorb", "absorb-corpus", "ask", "chat", "web", "demo"):  # wherever a model runs
        assert "--device" in commands[name]._option_string_actions, name
    base_options = {o for a in commands["absorb-corpus"]._actions for o in a.option_strings if "base" in o}
    assert base_options == {"--base"}  # one name for the base (no --base-model beside it)


def test_ask_answers_several_questions_with_one_model_load_and_chat_reads_stdin(
    tmp_path, saved_base, shine_adapter, capsys, monkeypatch
):
    import io

    from peft_shine.cli import common as cli  # where the commands load models

    loads = []
    real = cli.load_shine
    monkeypatch.setattr(cli, "load_shine", lambda *a: loads.append(a) or real(*a))
    doc = tmp_path / "doc.txt"
    doc.write_text(CONTEXTS[0], encoding="utf-8")
    common = ["--context-file", str(doc), "--base", str(saved_base), "--adapter", str(shine_adapter)]
    main(["ask", "Who built it?", "When?", *common, "--max-new-tokens", "3", "--device", "cpu"])
    out = capsys.readouterr().out
    assert len(loads) == 1 and out.count("Q: ") == 2 and "Q: When?\nA: " in out
    monkeypatch.setattr("sys.stdin", io.StringIO("Who built it?\n\nWhen?\n"))
    main(["chat", *common, "--max-new-tokens", "3"])
    assert len(loads) == 2 and len(capsys.readouterr().out.splitlines()) >= 2  # two answers, one more load


def test_bad_model_paths_are_one_line_errors(tmp_path, saved_base, shine_adapter):
    doc = tmp_path / "doc.txt"
    doc.write_text(CONTEXTS[0], encoding="utf-8")
    out = ["--output", str(tmp_path / "o")]
    absorb = ["absorb", str(doc), *out, "--base", str(saved_base)]
    with pytest.raises(SystemExit) as missing:  # before: a PEFT ValueError traceback
        main([*absorb, "--adapter", str(tmp_path / "no-such-adapter")])
    message = str(missing.value)
    assert message.startswith("error: --adapter") and "no-such-adapter" in message and "\n" not in message
    main([*absorb, "--adapter", str(shine_adapter)])
    with pytest.raises(SystemExit, match="is a plain LORA adapter, not a SHINE hypernetwork"):
        main([*absorb, "--adapter", str(tmp_path / "o")])  # an exported LoRA where a hypernetwork is needed
    with pytest.raises(SystemExit, match="^error: cannot load base .*no-such-base") as bad_base:
        main(["ask", "Who?", "--adapter", str(tmp_path / "o"), "--base", str(tmp_path / "no-such-base")])
    assert "\n" not in str(bad_base.value)
    with pytest.raises(SystemExit, match="--device 'gpu0' is not a device"):
        main([*absorb, "--adapter", str(shine_adapter), "--device", "gpu0"])
