"""The speed benchmark's `--quick` path on a tiny model: every section runs and all outputs are written."""

import json

from benchmarks.speed.run import Subject, main
from tests.helpers import build_model, build_shine


def test_quick_speed_benchmark_writes_results_and_plots(tmp_path, tokenizer):
    shine = build_shine(vocab_size=len(tokenizer), max_context_tokens=24)
    subject = Subject(shine, tokenizer, lambda: build_model(vocab_size=len(tokenizer)))
    main(["--quick", "--device", "cpu", "--output_dir", str(tmp_path)], subject=subject)

    results = json.loads((tmp_path / "results.json").read_text())
    expected = {"machine", "model", "settings", "memory_metric"}
    expected |= {"absorb_latency", "decoding", "icl_vs_shine", "batched_absorb", "absorb_vs_sft", "targets"}
    assert expected <= results.keys()
    assert {"platform", "cpu_model", "cpu_cores", "torch", "device_name", "command"} <= results["machine"].keys()
    absorb_rows = results["absorb_latency"]["rows"]
    assert [row["context_tokens_requested"] for row in absorb_rows] == [16, 32]
    assert [row["chunks"] for row in absorb_rows] == [1, 2]  # above max_context_tokens: measured chunked, not skipped
    assert all(row["ratio"] > 0 for row in results["absorb_latency"]["rows"])
    decoding = {row["variant"]: row for row in results["decoding"]["rows"]}
    assert decoding.keys() == {"base", "shine_unmerged", "merged"}
    assert all(row["generated_tokens"] == results["decoding"]["new_tokens"] for row in decoding.values())
    assert {(row["context_tokens_requested"], row["questions"]) for row in results["icl_vs_shine"]["rows"]} == {
        (16, 1),
        (16, 2),
        (32, 1),
        (32, 2),
    }
    assert [row["batch_size"] for row in results["batched_absorb"]["rows"]] == [1, 2]
    assert [target["met"] for target in results["targets"]][0] is None  # 512 tokens are not measured in --quick
    sft = results["absorb_vs_sft"]
    assert sft["absorb_s"] > 0 and sft["sft_s"] > 0 and sft["speedup"] == sft["sft_s"] / sft["absorb_s"]
    assert results["targets"][2]["value"] == sft["speedup"]
    assert "## Targets" in (tmp_path / "results.md").read_text()
    for name in ("absorb_latency.png", "icl_vs_shine.png", "batched_absorb.png"):
        assert (tmp_path / name).stat().st_size > 0
