"""Long and multiple documents: chunk planning, rank concatenation, composition, appending, SVD compression, and
exact export of the combined adapters."""

import pytest
import torch
from peft import PeftModel

from peft_shine.composition import compress_rank, concat_along_rank, stack_padded
from peft_shine.padding import left_pad
from peft_shine.tokenization import chunk_spans, encode_plain, split_into_chunks
from tests.helpers import CONTEXTS, build_model, build_shine

LONG = " ".join(CONTEXTS * 3)


def test_chunk_spans_cover_every_token_once_and_prefer_boundaries():
    spans = chunk_spans(23, boundaries={4, 9, 15}, max_tokens=6)
    assert spans == [(0, 4), (4, 9), (9, 15), (15, 19), (19, 23)]
    covered = [i for start, end in spans for i in range(start, end)]
    assert covered == list(range(23))
    overlapping = chunk_spans(23, boundaries=set(), max_tokens=6, overlap=2)
    assert overlapping[:3] == [(0, 6), (4, 10), (8, 14)] and overlapping[-1][1] == 23
    with pytest.raises(ValueError, match="overlap"):
        chunk_spans(10, set(), max_tokens=4, overlap=4)


def test_chunk_spans_are_balanced_so_a_batch_of_chunks_wastes_no_padding():
    assert chunk_spans(600, boundaries=set(), max_tokens=384) == [(0, 300), (300, 600)]
    assert chunk_spans(600, boundaries={290, 350}, max_tokens=384) == [(0, 290), (290, 600)]
    assert [end - start for start, end in chunk_spans(1000, set(), max_tokens=384)] == [334, 333, 333]
    assert chunk_spans(384, boundaries={100}, max_tokens=384) == [(0, 384)]


def test_split_into_chunks_is_lossless_and_ends_at_sentences(tokenizer):
    chunks = split_into_chunks(tokenizer, LONG, max_tokens=30)
    assert sum(chunks, []) == encode_plain(tokenizer, [LONG])[0]
    assert all(len(c) <= 30 for c in chunks)
    assert sum(tokenizer.decode(c).rstrip().endswith(".") for c in chunks[:-1]) >= len(chunks) // 2


def test_concatenated_rank_delta_is_the_sum_and_padding_adds_nothing():
    torch.manual_seed(0)
    parts = [(torch.randn(5, 2), torch.randn(2, 3)) for _ in range(3)]
    a, b = concat_along_rank(parts, weights=[1.0, 0.5, -2.0])
    expected = parts[0][0] @ parts[0][1] + 0.5 * parts[1][0] @ parts[1][1] - 2.0 * parts[2][0] @ parts[2][1]
    torch.testing.assert_close(a @ b, expected)
    stacked_a, stacked_b = stack_padded([parts[0], (a, b)])
    assert stacked_a.shape == (2, 5, 6)
    torch.testing.assert_close(stacked_a[0] @ stacked_b[0], parts[0][0] @ parts[0][1])


def test_svd_compression_error_decreases_with_rank_and_vanishes_at_full_rank():
    torch.manual_seed(0)
    a, b = torch.randn(12, 6), torch.randn(6, 9)
    errors = []
    for rank in range(1, 7):
        a_k, b_k, error, norm = compress_rank(a, b, rank)
        assert a_k.shape == (12, rank) and b_k.shape == (rank, 9)
        assert abs((a @ b - a_k @ b_k).square().sum().item() - error) <= 1e-3 * norm
        errors.append(error)
    assert all(x >= y for x, y in zip(errors, errors[1:])) and errors[-1] < 1e-8 * norm
    torch.testing.assert_close(a_k @ b_k, a @ b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("combination", ["mean", "sum"])
def test_long_document_adapter_combines_its_chunk_adapters(tokenizer, combination):
    model = build_shine(vocab_size=len(tokenizer), max_context_tokens=30, chunk_combination=combination)
    absorbed = model.absorb_context(LONG, tokenizer=tokenizer)
    chunks = model.base_model.context_chunks(LONG)[0]
    assert absorbed.num_chunks == [len(chunks)] > [1] and absorbed.context_token_counts == [sum(map(len, chunks))]
    ids, mask = left_pad(chunks, pad_id=0)
    per_chunk = model.base_model.generate_lora(ids, mask)  # each chunk alone, one row each
    scale = 1.0 / len(chunks) if combination == "mean" else 1.0
    for key in ("0.self_attn.q_proj", "1.mlp.down_proj"):
        a, b = per_chunk[key]
        chunk_sum = sum((a[i] @ b[i]).T for i in range(len(chunks)))
        torch.testing.assert_close(absorbed.delta_weight(key), scale * chunk_sum, atol=1e-5, rtol=1e-4)


def test_compose_weights_and_append(tokenizer):
    model = build_shine(vocab_size=len(tokenizer), chunk_combination="sum")
    singles = [model.absorb_context(text, tokenizer=tokenizer) for text in CONTEXTS[:2]]
    key = "1.self_attn.v_proj"
    composed = model.absorb_context(CONTEXTS[:2], compose=True, weights=[1.0, 0.25])
    assert len(composed) == 1 and composed.rank == 4 and composed.num_chunks == [2]
    expected = singles[0].delta_weight(key) + 0.25 * singles[1].delta_weight(key)
    torch.testing.assert_close(composed.delta_weight(key), expected, atol=1e-6, rtol=1e-5)
    model.absorb_context(CONTEXTS[0])
    appended = model.absorb_context(CONTEXTS[1], append=True)
    torch.testing.assert_close(
        appended.delta_weight(key), singles[0].delta_weight(key) + singles[1].delta_weight(key), atol=1e-6, rtol=1e-5
    )
    with pytest.raises(ValueError, match="compose=True"):
        model.absorb_context(CONTEXTS[:2], weights=[1, 1])
    model.absorb_context(CONTEXTS[:2])
    with pytest.raises(ValueError, match="append=True"):
        model.absorb_context(CONTEXTS[2], append=True)


def test_mean_combination_averages_documents_and_appends_as_a_running_mean(tokenizer):
    model = build_shine(vocab_size=len(tokenizer))  # chunk_combination="mean" (default)
    singles = [model.absorb_context(text, tokenizer=tokenizer).delta_weight("0.mlp.up_proj") for text in CONTEXTS]
    composed = model.absorb_context(CONTEXTS[:2], compose=True)
    torch.testing.assert_close(composed.delta_weight("0.mlp.up_proj"), (singles[0] + singles[1]) / 2)
    appended = model.absorb_context(CONTEXTS[2], append=True)  # 2 chunks so far + 1 new chunk
    assert appended.num_chunks == [3]
    torch.testing.assert_close(appended.delta_weight("0.mlp.up_proj"), sum(singles) / 3)


def test_batched_documents_with_different_chunk_counts(tokenizer, tmp_path):
    model = build_shine(vocab_size=len(tokenizer), max_context_tokens=30)
    absorbed = model.absorb_context([LONG, CONTEXTS[2]], tokenizer=tokenizer)
    assert absorbed.num_chunks[1] == 1 and absorbed.ranks[1] == 2 and absorbed.ranks[0] > 2
    short_alone = model.absorb_context(CONTEXTS[2])
    torch.testing.assert_close(
        absorbed[1].delta_weight("0.mlp.up_proj"), short_alone.delta_weight("0.mlp.up_proj"), atol=1e-5, rtol=1e-4
    )
    assert absorbed[1].rank == 2


def test_compressed_and_composed_adapters_export_exactly(tokenizer, tmp_path):
    model = build_shine(vocab_size=len(tokenizer), max_context_tokens=30, max_lora_rank=3)
    absorbed = model.absorb_context([LONG, CONTEXTS[0]], tokenizer=tokenizer, compose=True)
    assert absorbed.rank == 3 and 0 < absorbed.compression_error < 1
    ids = torch.tensor([tokenizer("Who built it?")["input_ids"]])
    with torch.no_grad():
        shine_logits = model(input_ids=ids).logits
    absorbed.save_pretrained(tmp_path / "lora")
    plain = PeftModel.from_pretrained(build_model("llama", len(tokenizer)), tmp_path / "lora").eval()
    with torch.no_grad():
        assert (plain(input_ids=ids).logits - shine_logits).abs().max() <= 1e-4
        merged = plain.merge_and_unload()
        assert (merged(input_ids=ids).logits - shine_logits).abs().max() <= 1e-4
