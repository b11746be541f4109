"""The long-document benchmark's `--quick` path on a tiny model and a tiny SQuAD-like file: QA by position, the
needle table, chunking, compression, ICL truncation and all outputs."""

import json
import time

from benchmarks.long_documents.documents import POSITIONS
from benchmarks.long_documents.run import Subject, main
from tests.helpers import build_model, build_shine

PARAGRAPHS = [
    ("Ada lives in Rome.", "Where does Ada live?", "Rome"),
    ("Ben owns a red boat.", "What does Ben own?", "a red boat"),
    ("The bridge opened in 1871.", "When did the bridge open?", "1871"),
    ("Clara paints birds.", "What does Clara paint?", "birds"),
    ("The mill makes flour.", "What does the mill make?", "flour"),
    ("Tom plays the harp.", "What does Tom play?", "the harp"),
    ("The lake is cold.", "What is cold?", "The lake"),
    ("Dora sells apples.", "Who sells apples?", "Dora"),
    ("The tower is tall.", "What is tall?", "The tower"),
    ("Eli reads at night.", "When does Eli read?", "at night"),
    ("Mary went home.", "Where did Mary go?", "home"),
    ("The cat sleeps.", "What sleeps?", "The cat"),
]


def test_quick_long_documents_benchmark(tmp_path, tokenizer):
    data = tmp_path / "squad_tiny.jsonl"
    records = [{"context": c, "question": q, "answers": [a]} for c, q, a in PARAGRAPHS]
    data.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    model = build_shine(vocab_size=len(tokenizer), max_context_tokens=48)
    subject = Subject(model, tokenizer, lambda: build_model(vocab_size=len(tokenizer)))
    output = tmp_path / "out"
    argv = ["--quick", "--device", "cpu", "--squad_dev", str(data), "--output_dir", str(output)]
    start = time.perf_counter()
    main([*argv, "--icl_max_tokens", "140", "--max_rank", "3"], subject=subject)
    assert time.perf_counter() - start < 40

    results = json.loads((output / "results.json").read_text())
    expected = {"machine", "model", "settings", "icl_limit", "data", "documents", "qa", "needle", "adaptation", "runs"}
    assert expected <= results.keys()
    assert {"platform", "cpu_model", "cpu_cores", "torch", "device_name", "command"} <= results["machine"].keys()
    assert results["settings"]["lengths"] == [64, 128] and results["icl_limit"] == 140
    methods = ["none", "icl", "shine_chunked", "shine_compressed"]
    assert results["settings"]["methods"] == methods

    cells = results["qa"]["cells"]
    assert {cell["position"] for cell in cells} == {*POSITIONS, "all"}
    for method in methods:
        assert {c["position"] for c in cells if c["method"] == method and c["length"] == 128} >= set(POSITIONS)
    assert all(0 <= c["f1"]["ci_low"] <= c["f1"]["mean"] <= c["f1"]["ci_high"] <= 1 for c in cells)
    assert {p["position"] for p in results["qa"]["predictions"]} == set(POSITIONS)
    assert all(d["document_tokens"] <= d["length"] for d in results["documents"])

    needle = results["needle"]["cells"]
    assert len(needle) == len(methods) * 2 * 5
    assert {cell["depth"] for cell in needle} == {0.0, 0.25, 0.5, 0.75, 1.0}
    assert all(0 <= cell["recall"]["mean"] <= 1 for cell in needle)

    adaptation = {(row["method"], row["length"]): row for row in results["adaptation"]}
    chunked, compressed = adaptation[("shine_chunked", 128)], adaptation[("shine_compressed", 128)]
    assert chunked["num_chunks_max"] > 1 and chunked["rank_max"] > 3 and chunked["compressed_documents"] == 0
    assert compressed["rank_max"] == 3 and compressed["compressed_documents"] > 0
    assert compressed["compression_error_mean"] >= 0 and compressed["adapt_seconds_per_document"] > 0
    assert adaptation[("icl", 128)]["icl_truncated_share"] > 0  # 128-token documents overflow the 140-token limit
    assert adaptation[("icl", 64)]["icl_truncated_share"] == 0
    assert model.base_model.shine_config.max_lora_rank is None  # the benchmark restored the config

    report = (output / "results.md").read_text()
    assert "## QA F1 by position" in report and "## Needle in a haystack" in report
    for name in ("f1_by_position.png", "needle.png"):
        assert (output / name).stat().st_size > 0
