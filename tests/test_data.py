"""Data pipeline: loaders, stage-1 / stage-2 example builders, answer-only labels, curriculum, datasets, collator."""

from __future__ import annotations

import copy
import random
from types import SimpleNamespace

import pytest
import torch

from peft_shine.tokenization import question_prompt_ids
from peft_shine.training import ShineTrainingCallback
from peft_shine.training.data import (
    COMP_INSTRUCTION,
    IGNORE_INDEX,
    RECON_INSTRUCTION,
    InstructDataset,
    PretrainDataset,
    ShineDataCollator,
    build_multi_qa_example,
    build_pretrain_example,
    build_single_qa_example,
    curriculum_context,
    encode_chat,
    group_by_context,
    load_qa_records,
    load_texts,
    pack_texts,
    short_context,
)
from tests.helpers import write_jsonl

EOT = "<|im_end|>\n"
LONG_TEXT = " ".join(f"w{i}" for i in range(100))
SQUAD_LIKE = {
    "context": "The tower was built in 1889. It was designed by Gustave Eiffel's company! Is it tall? Yes, very.",
    "question": "Whose company designed the tower?",
    "answers": ["Gustave Eiffel"],
}
BABI_LIKE = {
    "context": "Mary moved to the bathroom.\nJohn went to the hallway.\nDaniel went back to the hallway.",
    "question": "Where is Daniel?",
    "answers": ["hallway"],
    "supporting_facts": [2],
}
RECORDS = [
    {
        "context": f"Context number {i}. The colour of box {i} is shade {i}.",
        "question": f"Colour of box {i}?",
        "answers": [f"shade {i}"],
    }
    for i in range(5)
]


def labelled_text(tokenizer, example: dict) -> str:
    """Decoded tokens whose label is not -100 (labels equal input_ids there)."""
    ids = [tok for tok, label in zip(example["input_ids"], example["labels"]) if label != IGNORE_INDEX]
    assert ids == [label for label in example["labels"] if label != IGNORE_INDEX]
    return tokenizer.decode(ids)


def labelled_runs(labels: list[int]) -> int:
    """Number of contiguous runs of labelled positions."""
    flags = [label != IGNORE_INDEX for label in labels]
    return sum(1 for i, flag in enumerate(flags) if flag and (i == 0 or not flags[i - 1]))


def context_text(tokenizer, example: dict) -> str:
    return tokenizer.decode(example["context_input_ids"])


# ----------------------------------------------------------------------------------------------------------------------
# Stage 1


def test_recon_comp_ratio_and_comp_cut_fraction(tokenizer):
    rng = random.Random(0)
    examples = [build_pretrain_example(LONG_TEXT, tokenizer, rng) for _ in range(400)]
    kinds = [example["kind"] for example in examples]
    assert set(kinds) == {"recon", "comp"}
    assert 0.4 <= kinds.count("recon") / len(kinds) <= 0.6
    fractions = []
    for example in examples:
        evidence = context_text(tokenizer, example)
        if example["kind"] == "recon":
            assert evidence == LONG_TEXT
        else:
            assert LONG_TEXT.startswith(evidence) and LONG_TEXT[len(evidence)] == " "
            fractions.append(len(evidence.split()) / len(LONG_TEXT.split()))
    assert min(fractions) >= 0.7 and max(fractions) <= 0.9
    assert min(fractions) < 0.75 and max(fractions) > 0.85  # drawn across the range, not fixed


def test_comp_fraction_range_is_configurable(tokenizer):
    rng = random.Random(1)
    for _ in range(50):
        example = build_pretrain_example(LONG_TEXT, tokenizer, rng, comp_fraction_range=(0.3, 0.3), recon_probability=0)
        assert example["kind"] == "comp"
        assert len(context_text(tokenizer, example).split()) == 30
    with pytest.raises(ValueError, match="comp_fraction_range"):
        build_pretrain_example(LONG_TEXT, tokenizer, rng, comp_fraction_range=(0.9, 0.7))


@pytest.mark.parametrize("kind, instruction", [("recon", RECON_INSTRUCTION), ("comp", COMP_INSTRUCTION)])
def test_pretrain_labels_are_the_full_text_and_end_of_turn(tokenizer, kind, instruction):
    text = "The quick brown fox jumps over the lazy dog. It ran away."
    rng = random.Random(0)
    example = next(e for e in (build_pretrain_example(text, tokenizer, rng) for _ in range(50)) if e["kind"] == kind)
    assert labelled_text(tokenizer, example) == text + EOT
    assert labelled_runs(example["labels"]) == 1
    assert example["input_ids"][: len(question_prompt_ids(tokenizer, instruction))] == question_prompt_ids(
        tokenizer, instruction
    )
    assert len(example["input_ids"]) == len(example["labels"])


def test_pretrain_dataset_is_deterministic_and_packs(tokenizer):
    texts = ["Alpha beta gamma delta.", "Epsilon zeta eta.", "Theta iota kappa lambda mu.", LONG_TEXT]
    dataset = PretrainDataset(texts, tokenizer, seed=3)
    assert len(dataset) == 4
    assert [dataset[i] for i in range(4)] == [dataset[i] for i in range(4)]
    other = PretrainDataset(texts * 10, tokenizer, seed=4)
    same_seed = PretrainDataset(texts * 10, tokenizer, seed=3)
    assert [other[i]["kind"] for i in range(40)] != [same_seed[i]["kind"] for i in range(40)]
    packed = PretrainDataset(texts, tokenizer, pack_tokens=40)
    assert len(packed) < len(texts)
    assert packed.texts[0].startswith("Alpha beta gamma delta.\n\nEpsilon zeta eta.")
    with pytest.raises(ValueError, match="empty"):
        PretrainDataset(["fine", "  "], tokenizer)


def test_pack_texts_respects_budget_and_never_cuts(tokenizer):
    texts = ["one two", "three four", "five six", LONG_TEXT, "seven"]  # 5, 8, 7, >16, 4 tokens; "\n\n" is 2
    packed = pack_texts(texts, tokenizer, max_tokens=16)
    assert packed == ["one two\n\nthree four", "five six", LONG_TEXT, "seven"]
    assert len(tokenizer(packed[0], add_special_tokens=False)["input_ids"]) <= 16


# ----------------------------------------------------------------------------------------------------------------------
# Stage 2 and chat labels


def test_single_question_prompt_matches_ask_prompt(tokenizer):
    rng = random.Random(0)
    example = build_single_qa_example("Paris is in France.", "Where is Paris?", ["France"], [], tokenizer, rng)
    prompt = question_prompt_ids(tokenizer, "Where is Paris?")
    assert example["input_ids"][: len(prompt)] == prompt
    assert all(label == IGNORE_INDEX for label in example["labels"][: len(prompt)])
    assert example["labels"][len(prompt) :] == example["input_ids"][len(prompt) :]
    assert labelled_text(tokenizer, example) == "France" + EOT
    assert context_text(tokenizer, example) == "Paris is in France."
    assert example["kind"] == "single"


def test_multi_qa_round_trips_through_chat_template(tokenizer):
    qas = [("Who moved?", ["Mary", "M."]), ("Where to?", ["the bathroom"]), ("When?", ["yesterday"])]
    example = build_multi_qa_example("Mary moved to the bathroom yesterday.", qas, tokenizer)
    messages = []
    for question, answers in qas:
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answers[0]}]
    assert tokenizer.decode(example["input_ids"]) == tokenizer.apply_chat_template(messages, tokenize=False)
    assert labelled_text(tokenizer, example) == "".join(answers[0] + EOT for _, answers in qas)
    assert labelled_runs(example["labels"]) == len(qas)
    assert example["kind"] == "multi"


def test_encode_chat_rejects_empty_answer_and_inconsistent_template(tokenizer):
    with pytest.raises(ValueError, match="empty question or answer"):
        encode_chat(tokenizer, [("Question?", "  ")])
    inconsistent = copy.deepcopy(tokenizer)
    inconsistent.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
        "{% if m['role'] == 'assistant' and loop.last %}<think></think>{% endif %}{{ m['content'] }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    encode_chat(inconsistent, [("Q1?", "A1")])  # one turn is still prefix-consistent
    with pytest.raises(ValueError, match="prefix-consistent"):
        encode_chat(inconsistent, [("Q1?", "A1"), ("Q2?", "A2")])
    no_template = copy.deepcopy(tokenizer)
    no_template.chat_template = None
    with pytest.raises(ValueError, match="no chat template"):
        encode_chat(no_template, [("Q1?", "A1")])


def test_single_qa_dataset_hides_gold_among_distractors(tokenizer):
    dataset = InstructDataset(RECORDS, tokenizer, mode="single", num_distractors=2, seed=0)
    assert len(dataset) == len(RECORDS)
    all_contexts = {record["context"] for record in RECORDS}
    gold_positions = set()
    for index in range(len(dataset)):
        for repeat in range(4):
            dataset.seed = repeat
            example = dataset[index]
            parts = context_text(tokenizer, example).split("\n\n")
            gold = RECORDS[index]["context"]
            assert len(parts) == 3 and len(set(parts)) == 3
            assert gold in parts and set(parts) <= all_contexts
            gold_positions.add(parts.index(gold))
            assert labelled_text(tokenizer, example) == RECORDS[index]["answers"][0] + EOT
    assert gold_positions == {0, 1, 2}


def test_instruct_dataset_multi_groups_and_is_deterministic(tokenizer):
    records = RECORDS + [{**RECORDS[0], "question": "Which box?", "answers": ["box 0"]}]
    dataset = InstructDataset(records, tokenizer, mode="multi", seed=7)
    assert len(dataset) == len(RECORDS)
    assert dataset[0] == dataset[0]
    assert labelled_text(tokenizer, dataset[0]) == "shade 0" + EOT + "box 0" + EOT
    with pytest.raises(ValueError, match="num_distractors"):
        InstructDataset(records, tokenizer, mode="multi", num_distractors=1)
    with pytest.raises(ValueError, match="distinct contexts"):
        InstructDataset(RECORDS[:2], tokenizer, mode="single", num_distractors=2)
    with pytest.raises(ValueError, match="mode"):
        InstructDataset(records, tokenizer, mode="pairs")
    with pytest.raises(ValueError, match="record 1: field 'answers'"):
        InstructDataset([RECORDS[0], {**RECORDS[1], "answers": []}], tokenizer)


def test_group_by_context_keeps_order_and_supporting_facts():
    records = [
        BABI_LIKE,
        {**BABI_LIKE, "question": "Where is Mary?", "answers": ["bathroom"], "supporting_facts": [0]},
        SQUAD_LIKE,
    ]
    groups = group_by_context(records)
    assert [group["context"] for group in groups] == [BABI_LIKE["context"], SQUAD_LIKE["context"]]
    assert groups[0]["qas"] == [("Where is Daniel?", ["hallway"]), ("Where is Mary?", ["bathroom"])]
    assert groups[0]["supporting_facts"] == [[2], [0]]
    assert "supporting_facts" not in groups[1]


# ----------------------------------------------------------------------------------------------------------------------
# Curriculum


def test_short_context_babi_and_squad_like():
    assert short_context(BABI_LIKE) == "Daniel went back to the hallway."
    assert short_context({**BABI_LIKE, "supporting_facts": [2, 0]}) == (
        "Mary moved to the bathroom.\nDaniel went back to the hallway."
    )
    assert short_context(SQUAD_LIKE) == "It was designed by Gustave Eiffel's company!"
    assert short_context({**SQUAD_LIKE, "answers": ["not there", "1889"]}) == "The tower was built in 1889."
    assert short_context({**SQUAD_LIKE, "answers": ["built in 1889. It was"]}) == (
        "The tower was built in 1889. It was designed by Gustave Eiffel's company!"
    )
    assert short_context({**SQUAD_LIKE, "answers": ["Napoleon"]}) == SQUAD_LIKE["context"]


def test_short_context_of_a_group_covers_every_answer():
    group = group_by_context([SQUAD_LIKE, {**SQUAD_LIKE, "question": "Is it tall?", "answers": ["very"]}])[0]
    assert short_context(group) == "It was designed by Gustave Eiffel's company! Yes, very."
    babi_group = group_by_context([BABI_LIKE, {**BABI_LIKE, "supporting_facts": [0]}])[0]
    assert short_context(babi_group) == "Mary moved to the bathroom.\nDaniel went back to the hallway."


def test_curriculum_context_schedule():
    rng = random.Random(0)
    short, full = short_context(SQUAD_LIKE), SQUAD_LIKE["context"]
    assert all(curriculum_context(SQUAD_LIKE, 0.0, rng) == short for _ in range(50))
    assert all(curriculum_context(SQUAD_LIKE, 1.0, rng) == full for _ in range(50))
    halfway = [curriculum_context(SQUAD_LIKE, 0.5, rng) == short for _ in range(400)]
    assert 0.4 <= sum(halfway) / len(halfway) <= 0.6
    with pytest.raises(ValueError, match="progress"):
        curriculum_context(SQUAD_LIKE, 1.5, rng)


def test_instruct_dataset_curriculum_follows_progress(tokenizer):
    records = [SQUAD_LIKE, BABI_LIKE]
    dataset = InstructDataset(records, tokenizer, mode="single", curriculum_steps=100, seed=0)
    assert context_text(tokenizer, dataset[0]) == short_context(SQUAD_LIKE)
    assert context_text(tokenizer, dataset[1]) == "Daniel went back to the hallway."
    callback = ShineTrainingCallback(dataset)
    callback.on_step_begin(None, SimpleNamespace(global_step=250), None)
    assert dataset.progress == 1.0
    assert context_text(tokenizer, dataset[0]) == SQUAD_LIKE["context"]
    callback.on_train_begin(None, SimpleNamespace(global_step=25), None)
    assert dataset.progress == 0.25
    plain = InstructDataset(records, tokenizer, mode="single")
    assert context_text(tokenizer, plain[0]) == SQUAD_LIKE["context"]
    with pytest.raises(ValueError, match="progress"):
        dataset.set_progress(-0.1)


# ----------------------------------------------------------------------------------------------------------------------
# Collator


def test_collator_pads_answers_right_and_contexts_left(tokenizer):
    features = [
        {"input_ids": [5, 6, 7], "labels": [-100, 6, 7], "context_input_ids": [9], "kind": "single"},
        {"input_ids": [5], "labels": [5], "context_input_ids": [9, 10, 11, 12], "kind": "multi"},
    ]
    batch = ShineDataCollator(tokenizer)(features)
    pad = tokenizer.pad_token_id
    assert set(batch) == {"input_ids", "attention_mask", "labels", "context_input_ids", "context_attention_mask"}
    assert all(tensor.dtype == torch.long for tensor in batch.values())
    assert batch["input_ids"].tolist() == [[5, 6, 7], [5, pad, pad]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [5, -100, -100]]
    assert batch["context_input_ids"].tolist() == [[pad, pad, pad, 9], [9, 10, 11, 12]]
    assert batch["context_attention_mask"].tolist() == [[0, 0, 0, 1], [1, 1, 1, 1]]


def test_collator_overflow_policy(tokenizer):
    features = [{"input_ids": [5], "labels": [5], "context_input_ids": [9, 10, 11, 12]}]
    with pytest.raises(ValueError, match="max_context_tokens=3"):
        ShineDataCollator(tokenizer, max_context_tokens=3)(features)
    with pytest.warns(UserWarning, match="1 tokens dropped"):
        batch = ShineDataCollator(tokenizer, max_context_tokens=3, context_overflow="truncate")(features)
    assert batch["context_input_ids"].tolist() == [[9, 10, 11]]
    with pytest.raises(ValueError, match="context_overflow"):
        ShineDataCollator(tokenizer, context_overflow="drop")
    with pytest.raises(ValueError, match="remove_unused_columns"):
        ShineDataCollator(tokenizer)([{"input_ids": [5], "labels": [5]}])


def test_collator_on_real_examples(tokenizer):
    dataset = InstructDataset(RECORDS, tokenizer, mode="single", num_distractors=1)
    batch = ShineDataCollator(tokenizer)([dataset[0], dataset[1], dataset[2]])
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    assert batch["input_ids"].shape[0] == batch["context_input_ids"].shape[0] == 3
    assert ((batch["labels"] != IGNORE_INDEX) <= batch["attention_mask"].bool()).all()


# ----------------------------------------------------------------------------------------------------------------------
# Loaders


def test_load_texts_from_jsonl_gz_txt_and_comma_list(tmp_path):
    plain = write_jsonl(tmp_path / "a.jsonl", [{"text": "first"}, {"text": "second", "id": 2}])
    packed = write_jsonl(tmp_path / "b.jsonl.gz", [{"body": "third"}])
    (tmp_path / "c.txt").write_text("Para one\nstill one.\n\n  \nPara two.\n", encoding="utf-8")
    assert load_texts(plain) == ["first", "second"]
    assert load_texts(str(packed), text_field="body") == ["third"]
    assert load_texts(tmp_path / "c.txt") == ["Para one\nstill one.\n\n  \nPara two."]
    assert load_texts(str(tmp_path / "c.txt"), split_paragraphs=True) == ["Para one\nstill one.", "Para two."]
    assert load_texts(f"{plain}, {tmp_path / 'c.txt'}", split_paragraphs=True) == [
        "first",
        "second",
        "Para one\nstill one.",
        "Para two.",
    ]
    assert load_texts([str(plain), str(plain)]) == ["first", "second"] * 2


def test_load_texts_errors_name_file_and_line(tmp_path):
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "ok"}\n\n{"text": "oops"\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"broken\.jsonl, line 3: not valid JSON"):
        load_texts(broken)
    missing = write_jsonl(tmp_path / "missing.jsonl", [{"text": "ok"}, {"txt": "no"}])
    with pytest.raises(ValueError, match=r"missing\.jsonl, line 2: field 'text' is missing"):
        load_texts(missing)
    (tmp_path / "empty.txt").write_text("\n  \n", encoding="utf-8")
    with pytest.raises(ValueError, match="No texts found"):
        load_texts(tmp_path / "empty.txt")
    (tmp_path / "data.csv").write_text("text\nx\n", encoding="utf-8")
    with pytest.raises(ValueError, match="unsupported file type"):
        load_texts(tmp_path / "data.csv")


def test_load_qa_records_from_files(tmp_path):
    path = write_jsonl(tmp_path / "qa.jsonl.gz", [BABI_LIKE, {**SQUAD_LIKE, "answers": "Gustave Eiffel"}])
    records = load_qa_records(path)
    assert records[0] == BABI_LIKE
    assert records[1]["answers"] == ["Gustave Eiffel"]
    renamed = write_jsonl(tmp_path / "renamed.jsonl", [{"passage": "P.", "q": "Q?", "a": {"text": ["A"]}, "id": 1}])
    expected = [{"id": 1, "context": "P.", "question": "Q?", "answers": ["A"]}]
    assert load_qa_records(renamed, "passage", "q", "a") == expected


def test_load_qa_records_errors(tmp_path):
    bad = write_jsonl(tmp_path / "bad.jsonl", [SQUAD_LIKE, {"context": "C.", "answers": ["a"]}])
    with pytest.raises(ValueError, match=r"bad\.jsonl, line 2: field 'question' is missing"):
        load_qa_records(bad)
    not_object = tmp_path / "list.jsonl"
    not_object.write_text("[1, 2]\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"list\.jsonl, line 1: expected a JSON object"):
        load_qa_records(not_object)
    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(ValueError, match="No QA records found"):
        load_qa_records(tmp_path / "empty.jsonl")
    (tmp_path / "doc.txt").write_text("text", encoding="utf-8")
    with pytest.raises(ValueError, match="JSON Lines"):
        load_qa_records(tmp_path / "doc.txt")


def test_loaders_accept_hf_datasets():
    datasets = pytest.importorskip("datasets")
    texts = datasets.Dataset.from_dict({"text": ["a b", "c d"]})
    assert load_texts(texts) == ["a b", "c d"]
    with pytest.raises(ValueError, match="dataset row 0: field 'content' is missing"):
        load_texts(texts, text_field="content")
    qa = datasets.Dataset.from_list([SQUAD_LIKE])
    assert load_qa_records(qa) == [SQUAD_LIKE]
