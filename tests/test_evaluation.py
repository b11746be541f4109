import json

import pytest
import torch
from peft import get_peft_model

from peft_shine import ShineConfig
from peft_shine.evaluation import (
    MethodRun,
    bootstrap_ci,
    build_sft_model,
    chosen_option,
    copied_share,
    evaluate,
    exact_match,
    f1,
    gap_closure,
    generate_answers,
    is_open_vocabulary,
    load_eval_records,
    normalize_answer,
    option_accuracy,
    question_rounds,
    question_splits,
    save_results,
    summarize_run,
    train_on_context,
)
from peft_shine.evaluation.answer_likelihood import answer_log_likelihoods
from peft_shine.tokenization import ICL_SHORT_TEMPLATE, question_prompt_ids
from tests.helpers import build_model, write_jsonl

LIGHTHOUSE = "The lighthouse on Marrow Point was built in 1871 by the engineer Clara Vennet."
KITCHEN = "Mary went to the kitchen. John picked up the apple. Sandra travelled to the garden."
RECORDS = [
    {"id": "q1", "context": LIGHTHOUSE, "question": "Who built the lighthouse?", "answers": ["Clara Vennet"]},
    {"id": "q2", "context": KITCHEN, "question": "Where is Mary?", "answers": ["the kitchen", "kitchen"]},
    {"id": "q3", "context": LIGHTHOUSE, "question": "When was it built?", "answers": ["1871"]},
    {
        "context": "The report was signed by the director, Ingrid Solberg.",
        "question": "Who signed the report?",
        "answers": ["Ingrid Solberg"],
        "options": ["Ingrid Solberg", "Clara Vennet"],
    },
]
METHODS = ("none", "icl", "shine", "sft")
MAX_NEW_TOKENS = 4


# ----------------------------------------------------------------------------------------------------------------------
# Metrics


def test_normalize_answer_follows_squad():
    assert normalize_answer("The  Cat!") == "cat"
    assert normalize_answer("  An apple, a PEAR and the plum. ") == "apple pear and plum"
    assert normalize_answer("theatre") == "theatre"


def test_exact_match_takes_the_best_gold():
    assert exact_match("the Kitchen.", ["garden", "kitchen"]) == 1.0
    assert exact_match("kitchen table", ["garden", "kitchen"]) == 0.0


def test_f1_partial_overlap_by_hand():
    # prediction tokens [clara, vennet, built, it], gold [clara, vennet]: precision 2/4, recall 2/2 -> F1 = 2/3.
    assert f1("Clara Vennet built it", ["Clara Vennet"]) == pytest.approx(2 / 3)
    # gold [engineer, clara, vennet] vs prediction [clara]: precision 1, recall 1/3 -> F1 = 0.5; max with 0.
    assert f1("Clara", ["the engineer Clara Vennet", "Tomas Hale"]) == pytest.approx(0.5)


def test_f1_empty_prediction():
    assert f1("", ["Clara Vennet"]) == 0.0
    assert f1("the", ["a"]) == 1.0  # both empty after normalisation
    assert exact_match("", ["Clara Vennet"]) == 0.0


def test_metrics_need_golds():
    with pytest.raises(ValueError, match="non-empty"):
        f1("x", [])


def test_option_accuracy():
    options = ["Paris", "Paris, Texas", "Lyon"]
    assert option_accuracy("paris.", options, ["Paris"]) == 1.0
    assert option_accuracy("The answer is Lyon.", options, ["Paris"]) == 0.0
    assert option_accuracy("It is in Lyon.", options, ["Lyon"]) == 1.0
    assert chosen_option("Paris or Lyon", options) is None
    assert chosen_option("Paris, Texas", options) == "Paris, Texas"


def test_bootstrap_ci_contains_the_mean_and_is_seeded():
    values = [1.0, 0.0, 1.0, 1.0, 0.0, 0.5, 1.0, 0.0, 1.0, 1.0]
    low, high = bootstrap_ci(values, seed=3)
    mean = sum(values) / len(values)
    assert low < mean < high and 0.0 <= low and high <= 1.0
    assert bootstrap_ci(values, seed=3) == (low, high)
    narrow_low, narrow_high = bootstrap_ci(values, seed=3, alpha=0.5)
    assert low <= narrow_low <= narrow_high <= high


def test_bootstrap_ci_is_degenerate_for_constant_values():
    low, high = bootstrap_ci([0.25] * 7)
    assert low == pytest.approx(0.25) and high == pytest.approx(0.25)


def test_question_rounds_take_one_question_per_context():
    assert question_rounds([[0, 2, 5], [1], [3, 4]]) == [[(0, 0), (1, 1), (2, 3)], [(0, 2), (2, 4)], [(0, 5)]]


def test_summarize_run_scores_and_times():
    predictions = ["Clara Vennet", "in the garden", "It was 1871", "Ingrid Solberg"]
    run = MethodRun(predictions, num_contexts=3, adapt_seconds=0.3, generate_seconds=2.0)
    summary = summarize_run(RECORDS, run, seed=0)
    # F1 per record: 1, 0, "it was 1871" vs "1871": P 1/3, R 1 -> 2*(1/3)/(4/3) = 0.5, 1 -> mean 0.625.
    assert [item["f1"] for item in summary["predictions"]] == pytest.approx([1.0, 0.0, 0.5, 1.0])
    assert summary["f1"]["mean"] == pytest.approx(0.625) and summary["em"]["mean"] == pytest.approx(0.5)
    assert summary["accuracy"] == {"mean": 1.0, "ci_low": 1.0, "ci_high": 1.0}
    assert summary["adapt_seconds_per_context"] == pytest.approx(0.1)
    assert summary["generate_seconds_per_question"] == pytest.approx(0.5)


# ----------------------------------------------------------------------------------------------------------------------
# Records


@pytest.mark.parametrize("name", ["records.jsonl", "records.jsonl.gz"])
def test_load_eval_records_samples_deterministically(tmp_path, name):
    records = [{"id": i, "context": f"Context {i}.", "question": f"Q{i}?", "answers": [str(i)]} for i in range(50)]
    path = tmp_path / name
    write_jsonl(path, records)
    assert load_eval_records(path) == records
    sample = load_eval_records(path, limit=10, seed=7)
    assert sample == load_eval_records(path, limit=10, seed=7)
    ids = [record["id"] for record in sample]
    assert len(ids) == 10 and ids == sorted(ids) and len(set(ids)) == 10
    assert ids != [record["id"] for record in load_eval_records(path, limit=10, seed=8)]
    assert load_eval_records(path, limit=500) == records


def test_load_eval_records_rejects_bad_records(tmp_path):
    path = tmp_path / "bad.jsonl"
    write_jsonl(path, [{"context": "Some text.", "question": "What?", "answers": []}])
    with pytest.raises(ValueError, match="bad.jsonl, line 1.*answers"):
        load_eval_records(path)


# ----------------------------------------------------------------------------------------------------------------------
# End to end


@pytest.fixture(scope="module")
def shine_model(tokenizer):
    config = ShineConfig(lora_rank=2, meta_lora_rank=4, m2p_layers=2, target_modules=["q_proj", "v_proj"])
    return get_peft_model(build_model("llama", len(tokenizer)), config)


@pytest.fixture(scope="module")
def results(shine_model, tokenizer):
    return evaluate(
        shine_model,
        tokenizer,
        RECORDS,
        methods=METHODS,
        batch_size=2,
        max_new_tokens=MAX_NEW_TOKENS,
        base_factory=lambda: build_model("llama", len(tokenizer)),
        sft_epochs=1,
    )


def test_evaluate_schema(results):
    json.dumps(results)
    assert results["num_records"] == len(RECORDS)
    assert list(results["methods"]) == list(METHODS)
    assert results["config"]["methods"] == list(METHODS) and results["config"]["sft_epochs"] == 1
    for name, summary in results["methods"].items():
        for metric in ("f1", "em", "accuracy"):
            stats = summary[metric]
            assert set(stats) == {"mean", "ci_low", "ci_high"}
            assert 0.0 <= stats["ci_low"] <= stats["mean"] <= stats["ci_high"] <= 1.0
        expected_adapt = name in ("shine", "sft")
        assert (summary["adapt_seconds_per_context"] > 0) == expected_adapt, name
        assert summary["generate_seconds_per_question"] > 0
        predictions = summary["predictions"]
        assert [item["id"] for item in predictions] == ["q1", "q2", "q3", 3]
        for item, record in zip(predictions, RECORDS):
            assert {"id", "question", "prediction", "answers", "f1", "em"} <= set(item)
            assert item["question"] == record["question"] and item["answers"] == record["answers"]
            assert isinstance(item["prediction"], str) and 0.0 <= item["f1"] <= 1.0 and item["em"] in (0.0, 1.0)
            assert ("accuracy" in item) == ("options" in record)


def test_baselines_answer_like_the_plain_base(results, tokenizer):
    base = build_model("llama", len(tokenizer))
    questions = [record["question"] for record in RECORDS]
    icl_prompts = [f"{record['context']}\n\nQuestion: {record['question']}" for record in RECORDS]
    for name, prompts in (("none", questions), ("icl", icl_prompts)):
        batches = [prompts[:2], prompts[2:]]
        expected = [answer for batch in batches for answer in generate_answers(base, tokenizer, batch, MAX_NEW_TOKENS)]
        assert [item["prediction"] for item in results["methods"][name]["predictions"]] == expected


def test_sft_starts_each_context_from_a_fresh_lora(shine_model, tokenizer):
    def sft_predictions(records):
        results = evaluate(
            shine_model,
            tokenizer,
            records,
            methods=["sft"],
            max_new_tokens=MAX_NEW_TOKENS,
            base_factory=lambda: build_model("llama", len(tokenizer)),
            sft_epochs=5,
            sft_lr=0.05,
        )
        return [item["prediction"] for item in results["methods"]["sft"]["predictions"]]

    assert sft_predictions(RECORDS)[1] == sft_predictions(RECORDS[1:2])[0]


def test_train_on_context_lowers_the_language_model_loss(shine_model, tokenizer):
    model = build_sft_model(build_model("llama", len(tokenizer)), ["q_proj", "v_proj"], torch.device("cpu"), seed=0)
    context_ids, _ = shine_model.tokenize_contexts([LIGHTHOUSE], tokenizer)
    with torch.no_grad():
        before = model(input_ids=context_ids, labels=context_ids).loss.item()
    train_on_context(model, context_ids, epochs=5, lr=1e-2)
    with torch.no_grad():
        after = model(input_ids=context_ids, labels=context_ids).loss.item()
    assert after < before - 0.1
    assert all("lora_" in name for name, param in model.named_parameters() if param.requires_grad)


def test_evaluate_leaves_no_context_absorbed(results, shine_model):
    assert shine_model.base_model.current_context is None


def test_shine_absorbs_each_context_once(shine_model, tokenizer, monkeypatch):
    absorbed_batches = []
    absorb = shine_model.absorb_context

    def spy(contexts, **kwargs):
        absorbed_batches.append(list(contexts))
        return absorb(contexts, **kwargs)

    monkeypatch.setattr(shine_model, "absorb_context", spy)
    evaluate(shine_model, tokenizer, RECORDS, methods=["shine"], batch_size=8, max_new_tokens=2)
    assert absorbed_batches == [[LIGHTHOUSE, KITCHEN, RECORDS[3]["context"]]]


def test_evaluate_rejects_bad_arguments(shine_model, tokenizer):
    with pytest.raises(ValueError, match="Unknown method"):
        evaluate(shine_model, tokenizer, RECORDS, methods=["rag"])
    with pytest.raises(ValueError, match="base_factory"):
        evaluate(shine_model, tokenizer, RECORDS, methods=["sft"])


def test_save_results_writes_json_and_markdown(results, tmp_path):
    path = tmp_path / "out" / "results.json"
    save_results(results, path)
    assert json.loads(path.read_text()) == results
    table = path.with_suffix(".md").read_text().splitlines()
    split_columns = "".join(f"F1 {name} (n={len(indices)}) | " for name, indices in results["splits"].items())
    assert table[0] == f"| method | F1 (95% CI) | EM | accuracy | {split_columns}adapt s/context | gen s/question |"
    assert table[2].startswith("| none | ")
    closure = results["gap_closure"]["closure"]
    assert len(table) == 2 + len(METHODS) + (2 if closure is not None else 0)


# ----------------------------------------------------------------------------------------------------------------------
# Open-vocabulary split, gap closure, in-prompt prompts, answer likelihoods


def test_open_vocabulary_needs_an_answer_word_that_question_and_no_context_answer_lack():
    record = {"context": "c", "question": "Who built the Marrow lighthouse?", "answers": ["Clara Vennet"]}
    assert is_open_vocabulary(record, "It was built by a man.")
    assert not is_open_vocabulary(record, "Clara Vennet, I think")
    assert not is_open_vocabulary({**record, "answers": ["the Marrow"]}, "")  # "marrow" is in the question


def test_question_splits_by_rule_and_by_answer_kind():
    records = [
        {"question": "Where?", "answers": ["Zarnow"], "answer_kind": "open"},
        {"question": "Colour?", "answers": ["red"], "answer_kind": "closed"},
    ]
    splits = question_splits(records, ["Paris", "red"])
    assert splits == {"open_vocabulary": [0], "other": [1], "kind=open": [0], "kind=closed": [1]}
    assert question_splits(records, None) == {"kind=open": [0], "kind=closed": [1]}


def test_gap_closure_against_the_best_in_prompt_prompt_by_hand():
    def method(value):
        return {"f1": {"mean": value}}

    results = {"methods": {"none": method(0.1), "icl": method(0.3), "icl_short": method(0.5), "shine": method(0.2)}}
    assert gap_closure(results) == {"best_in_prompt": "icl_short", "closure": pytest.approx(0.25)}
    del results["methods"]["shine"]
    assert gap_closure(results) is None


def test_icl_short_puts_the_context_in_the_short_answer_prompt(shine_model, tokenizer):
    base = build_model("llama", len(tokenizer))
    prompts = [ICL_SHORT_TEMPLATE.format(context=r["context"], question=r["question"]) for r in RECORDS]
    short = evaluate(shine_model, tokenizer, RECORDS, methods=["icl_short"], batch_size=2, max_new_tokens=2)
    expected = generate_answers(base, tokenizer, prompts[:2], 2) + generate_answers(base, tokenizer, prompts[2:], 2)
    assert [item["prediction"] for item in short["methods"]["icl_short"]["predictions"]] == expected
    assert short["config"]["icl_templates"] == {"icl_short": ICL_SHORT_TEMPLATE}


def manual_log_likelihood(model, tokenizer, prompt, answer):
    """Sum, count and first value of the answer tokens' log-probs, one unpadded row at a time."""
    prompt_ids = question_prompt_ids(tokenizer, prompt)
    answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt_ids + answer_ids])
    with torch.no_grad():
        log_probs = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
    picked = [log_probs[len(prompt_ids) + i - 1, token].item() for i, token in enumerate(answer_ids)]
    return sum(picked), len(picked), picked[0]


def test_answer_log_likelihoods_match_a_row_by_row_computation(shine_model, tokenizer):
    shine_model.eval()
    prompts, answers = ["Who built the lighthouse?", "Where is Mary?"], ["Clara Vennet", "the kitchen"]
    for context in (None, [LIGHTHOUSE, KITCHEN]):
        if context:
            absorbed = shine_model.absorb_context(context, tokenizer=tokenizer)
        scored = answer_log_likelihoods(shine_model, tokenizer, prompts, answers)
        for row, (prompt, answer) in enumerate(zip(prompts, answers)):
            if context:
                shine_model.use_context(absorbed[row])
            total, count, first = manual_log_likelihood(shine_model, tokenizer, prompt, answer)
            assert scored[row]["tokens"] == count
            assert scored[row]["sum"] == pytest.approx(total, abs=1e-4)
            assert scored[row]["first"] == pytest.approx(first, abs=1e-4)
        shine_model.forget()


def test_likelihood_gains_and_reference_reuse(shine_model, tokenizer):
    full = evaluate(shine_model, tokenizer, RECORDS, methods=["none", "shine"], max_new_tokens=2, likelihood=True)
    shine = full["methods"]["shine"]
    none_rows = [item["log_likelihood"] for item in full["methods"]["none"]["predictions"]]
    shine_rows = [item["log_likelihood"] for item in shine["predictions"]]
    tokens = sum(row["tokens"] for row in shine_rows)
    expected = (sum(r["sum"] for r in shine_rows) - sum(r["sum"] for r in none_rows)) / tokens
    assert shine["likelihood"]["gain_per_token"] == pytest.approx(expected)
    first = sum(a["first"] - b["first"] for a, b in zip(shine_rows, none_rows)) / len(RECORDS)
    assert shine["likelihood"]["gain_first_token"] == pytest.approx(first)
    # Scoring SHINE alone against the reference run gives the same splits and gains, without running `none` again.
    alone = evaluate(
        shine_model, tokenizer, RECORDS, methods=["shine"], max_new_tokens=2, likelihood=True, reference=full
    )
    assert list(alone["methods"]) == ["shine"] and alone["splits"] == full["splits"]
    assert alone["methods"]["shine"]["likelihood"] == pytest.approx(shine["likelihood"])
    assert alone["methods"]["shine"]["splits"] == full["methods"]["shine"]["splits"]
    with pytest.raises(ValueError, match="other records"):
        evaluate(shine_model, tokenizer, RECORDS[:2], methods=["shine"], max_new_tokens=2, reference=full)


def test_copied_share_counts_only_the_words_only_the_context_gives():
    record = {"question": "On which river does Relbridale lie?", "answers": ["Ostrel River"]}
    assert copied_share(record, "Borlok River", "The Thames.") == 0.0  # F1 would give 0.5 for "river"
    assert copied_share(record, "the Ostrel River", "The Thames.") == 1.0
    assert copied_share({**record, "answers": ["Ostrel Kelm"]}, "Ostrel", "") == 0.5
    assert copied_share({**record, "answers": ["the river"]}, "anything", "") is None
