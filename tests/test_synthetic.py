"""Invented-facts documents: deterministic, answerable only from the text, loadable as QA records."""

import json

from peft_shine.evaluation import normalize_answer
from peft_shine.training.data import load_qa_records, load_texts
from peft_shine.training.synthetic import main, synthetic_records


def test_records_are_deterministic_per_seed_and_differ_across_seeds():
    assert synthetic_records(20, seed=3) == synthetic_records(20, seed=3)
    contexts = {r["context"] for r in synthetic_records(20, seed=3)}
    assert not contexts & {r["context"] for r in synthetic_records(20, seed=4)}


def test_every_answer_is_a_span_of_its_context_and_open_answers_are_not_in_the_question():
    records = synthetic_records(200, seed=0)
    kinds = {r["answer_kind"] for r in records}
    assert kinds == {"open", "closed"}
    for record in records:
        assert record["answers"][0] in record["context"]
        if record["answer_kind"] == "open":
            answer_words = set(normalize_answer(record["answers"][0]).split())
            assert answer_words - set(normalize_answer(record["question"]).split())


def test_documents_hold_three_to_eight_facts_with_one_question_each():
    records = synthetic_records(100, seed=1)
    per_document = {}
    for record in records:
        per_document.setdefault(record["context"], []).append(record)
    assert len(per_document) == 100
    assert all(3 <= len(questions) <= 8 for questions in per_document.values())
    assert len({r["id"] for r in records}) == len(records)


def test_command_line_writes_qa_records(tmp_path):
    path = tmp_path / "syn.jsonl"
    main(["--output", str(path), "--documents", "5", "--seed", "2"])
    loaded = load_qa_records(str(path))
    assert loaded == [dict(r) for r in map(json.loads, path.read_text().splitlines())]
    assert [r["id"] for r in loaded] == [r["id"] for r in synthetic_records(5, seed=2)]


def test_command_line_writes_one_text_per_document(tmp_path):
    path = tmp_path / "texts.jsonl"
    main(["--output", str(path), "--documents", "6", "--seed", "2", "--texts"])
    texts = load_texts(str(path))
    assert texts == list(dict.fromkeys(r["context"] for r in synthetic_records(6, seed=2))) and len(texts) == 6
