"""Property-based tests (hypothesis): the slicing plan, the export round trip, and the data builders on random
shapes, ranks and texts."""

import random

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peft_shine.absorbed import AbsorbedContext
from peft_shine.hypernetwork import SlicingPlan, module_key
from peft_shine.training.data import IGNORE_INDEX, build_single_qa_example
from tests.helpers import build_tokenizer

TOKENIZER = build_tokenizer()
shapes = st.lists(st.tuples(st.integers(1, 7), st.integers(1, 7)), min_size=1, max_size=4)


@given(shapes=shapes, rank=st.integers(1, 4), layers=st.integers(1, 3), extra=st.integers(0, 5))
@settings(max_examples=60, deadline=None)
def test_slicing_reads_every_number_once_in_order(shapes, rank, layers, extra):
    plan = SlicingPlan(tuple((f"m{i}", a, b) for i, (a, b) in enumerate(shapes)), rank=rank, num_layers=layers)
    flat = torch.randn(2, layers, plan.numbers_per_layer + extra)
    factors = plan.slice(flat, scale=1.0)
    for layer in range(layers):
        pieces = []
        for name, _, _ in plan.module_shapes:
            a, b = factors[module_key(layer, name)]
            pieces += [a.flatten(1), b.flatten(1)]
        torch.testing.assert_close(torch.cat(pieces, dim=1), flat[:, layer, : plan.numbers_per_layer], rtol=0, atol=0)


@given(shapes=shapes, rank=st.integers(1, 4), contexts=st.integers(1, 3), data=st.data())
@settings(max_examples=40, deadline=None)
def test_export_round_trip_gives_the_same_delta(shapes, rank, contexts, data):
    factors = {
        f"0.m{i}": (torch.randn(contexts, a, rank), torch.randn(contexts, rank, b)) for i, (a, b) in enumerate(shapes)
    }
    absorbed = AbsorbedContext(factors, {k: f"model.layers.0.{k[2:]}" for k in factors}, [3] * contexts)
    index = data.draw(st.integers(0, contexts - 1))
    state = absorbed[index].lora_state_dict()
    for key, (a, b) in factors.items():
        prefix = f"base_model.model.model.layers.0.{key[2:]}"
        dense = state[f"{prefix}.lora_B.weight"] @ state[f"{prefix}.lora_A.weight"]
        torch.testing.assert_close(dense, (a[index] @ b[index]).T)


words = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=12)


@given(
    context=st.lists(words, min_size=1, max_size=20).map(" ".join),
    answer=words,
    question=words,
    seed=st.integers(0, 1000),
)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_single_qa_labels_decode_to_the_answer(context, answer, question, seed):
    if not context.strip() or not answer.strip() or not question.strip():
        return
    example = build_single_qa_example(context, question, [answer], [], TOKENIZER, random.Random(seed))
    labelled = [t for t, label in zip(example["input_ids"], example["labels"]) if label != IGNORE_INDEX]
    assert TOKENIZER.decode(labelled).startswith(answer.strip()) or answer.strip() in TOKENIZER.decode(labelled)
    assert TOKENIZER.decode(example["context_input_ids"]) == context
