import pytest
import torch
from peft import PeftModelForCausalLM

from peft_shine import ShineConfig, ShineModel
from tests.helpers import CONTEXTS, LLAMA_LAYER, build_model, build_shine


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits


@pytest.fixture
def ids(tokenizer):
    return torch.tensor([tokenizer("Where is Mary? She is in the")["input_ids"]])


def test_get_peft_model_builds_shine_and_records_the_base(tokenizer):
    model = build_shine(vocab_size=len(tokenizer))
    assert isinstance(model, PeftModelForCausalLM) and isinstance(model.base_model, ShineModel)
    config = model.peft_config["default"]
    assert (config.base_model_type, config.base_hidden_size, config.base_num_layers) == ("llama", 64, 2)
    assert [name for name, _, _ in config.target_module_shapes] == LLAMA_LAYER
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and all("shine_" in n for n in names)
    assert any("memory_embeddings" in n for n in names) and any("shine_meta_A" in n for n in names)
    assert any(".m2p." in n for n in names)


def test_forget_is_exactly_the_base_and_absorb_changes_the_output(tokenizer, ids):
    base = build_model("llama", len(tokenizer))
    model = build_shine(vocab_size=len(tokenizer))
    reference = logits(base, ids)
    assert torch.equal(logits(model, ids), reference)
    model.absorb_context(CONTEXTS[0], tokenizer=tokenizer)
    assert not torch.allclose(logits(model, ids), reference)
    model.forget()
    model.forget()  # idempotent
    assert torch.equal(logits(model, ids), reference)


def test_batched_absorb_equals_each_context_alone(tokenizer, ids):
    model = build_shine(vocab_size=len(tokenizer))
    batched = model.absorb_context(CONTEXTS, tokenizer=tokenizer)
    batch_logits = logits(model, ids.repeat(3, 1))
    for i, context in enumerate(CONTEXTS):
        single = model.absorb_context(context, tokenizer=tokenizer)
        for key, (a, b) in single.factors.items():
            torch.testing.assert_close(batched.factors[key][0][i], a[0], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(batched.factors[key][1][i], b[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(batch_logits[i], logits(model, ids)[0], atol=1e-5, rtol=1e-5)


def test_several_rows_per_context_are_context_major(tokenizer, ids):
    model = build_shine(vocab_size=len(tokenizer))
    model.absorb_context(CONTEXTS[:2], tokenizer=tokenizer)
    four = logits(model, ids.repeat(4, 1))
    two = logits(model, ids.repeat(2, 1))
    torch.testing.assert_close(four[0], two[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(four[1], two[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(four[3], two[1], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="multiple of the context count"):
        logits(model, ids.repeat(3, 1))


def test_generate_with_beams_and_return_sequences_uses_each_rows_context(tokenizer):
    model = build_shine(vocab_size=len(tokenizer))
    prompt = tokenizer("Where is", return_tensors="pt")
    kwargs = dict(max_new_tokens=4, num_beams=2, num_return_sequences=2, do_sample=False, pad_token_id=0)
    model.absorb_context(CONTEXTS[:2], tokenizer=tokenizer)
    both = model.generate(
        input_ids=prompt.input_ids.repeat(2, 1), attention_mask=prompt.attention_mask.repeat(2, 1), **kwargs
    )
    assert both.shape[0] == 4
    for i in range(2):
        model.absorb_context(CONTEXTS[i], tokenizer=tokenizer)
        alone = model.generate(**prompt, **kwargs)
        assert torch.equal(both[2 * i : 2 * i + 2], alone)


def test_absorbed_context_manager_restores_previous_state_on_exception(tokenizer, ids):
    model = build_shine(vocab_size=len(tokenizer))
    first = model.absorb_context(CONTEXTS[0], tokenizer=tokenizer)
    expected = logits(model, ids)
    with pytest.raises(RuntimeError):
        with model.absorbed(CONTEXTS[1], tokenizer=tokenizer) as inner:
            assert model.current_context is inner
            assert not torch.allclose(logits(model, ids), expected)
            raise RuntimeError("fail inside the block")
    assert model.current_context is first
    assert torch.equal(logits(model, ids), expected)


def test_ask_returns_text_and_uses_the_chat_template(tokenizer):
    model = build_shine(vocab_size=len(tokenizer))
    model.absorb_context(CONTEXTS[0], tokenizer=tokenizer)
    answer = model.ask("Who built the lighthouse?", max_new_tokens=3)
    assert isinstance(answer, str)
    answers = model.ask(["Who?", "When?"], max_new_tokens=3)
    assert isinstance(answers, list) and len(answers) == 2


def test_training_forward_gives_gradients_to_every_trainable_tensor_and_none_to_the_base(tokenizer):
    model = build_shine(vocab_size=len(tokenizer)).train()
    context = tokenizer(CONTEXTS[:2], padding=True, padding_side="left", return_tensors="pt")
    inputs = tokenizer(["Mary is in the kitchen.", "It was built in 1871."] * 2, padding=True, return_tensors="pt")
    out = model(
        input_ids=inputs.input_ids,
        attention_mask=inputs.attention_mask,
        labels=inputs.input_ids,
        context_input_ids=context.input_ids,
        context_attention_mask=context.attention_mask,
    )
    out.loss.backward()
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None and param.grad.abs().sum() > 0, name
        else:
            assert param.grad is None, name
    assert model.base_model.runtime.state.mode == "base"


def test_activation_checkpointing_gives_the_same_loss_and_gradients(tokenizer):
    context = tokenizer(CONTEXTS[:2], padding=True, padding_side="left", return_tensors="pt")
    inputs = tokenizer(["Mary is in the kitchen.", "It was built in 1871."], padding=True, return_tensors="pt")
    batch = dict(
        input_ids=inputs.input_ids,
        attention_mask=inputs.attention_mask,
        labels=inputs.input_ids,
        context_input_ids=context.input_ids,
        context_attention_mask=context.attention_mask,
    )
    results = []
    for checkpointing in (False, True):
        model = build_shine(vocab_size=len(tokenizer)).train()
        if checkpointing:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            assert model.get_base_model().is_activation_checkpointing
        loss = model(**batch).loss
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        results.append((loss.detach(), grads))
    torch.testing.assert_close(results[0][0], results[1][0])
    for name, grad in results[0][1].items():
        torch.testing.assert_close(grad, results[1][1][name], atol=1e-6, rtol=1e-4, msg=name)


def test_context_overflow_policy(tokenizer):
    model = build_shine(vocab_size=len(tokenizer), max_context_tokens=8, context_overflow="error")
    with pytest.raises(ValueError, match="max_context_tokens=8"):
        model.absorb_context(CONTEXTS[0], tokenizer=tokenizer)
    model = build_shine(vocab_size=len(tokenizer), max_context_tokens=8, context_overflow="truncate")
    with pytest.warns(UserWarning, match="tokens dropped"):
        absorbed = model.absorb_context(CONTEXTS[0], tokenizer=tokenizer)
    assert absorbed.context_token_counts == [8] and absorbed.num_chunks == [1]
    model = build_shine(vocab_size=len(tokenizer), max_context_tokens=8)  # default: chunk
    absorbed = model.absorb_context(CONTEXTS[0], tokenizer=tokenizer)
    total = len(tokenizer(CONTEXTS[0])["input_ids"])
    assert absorbed.context_token_counts == [total] and absorbed.num_chunks[0] >= -(-total // 8)
    assert absorbed.rank == 2 * absorbed.num_chunks[0]  # lora_rank 2 per chunk


def test_bad_context_input_is_rejected(tokenizer):
    model = build_shine(vocab_size=len(tokenizer))
    with pytest.raises(ValueError, match="empty"):
        model.absorb_context("   ", tokenizer=tokenizer)
    with pytest.raises(ValueError, match="context 1"):
        model.absorb_context(["fine", ""], tokenizer=tokenizer)
    with pytest.raises(TypeError, match="str"):
        model.absorb_context(b"bytes", tokenizer=tokenizer)


def test_special_token_strings_in_a_context_are_plain_text(tokenizer):
    model = build_shine(vocab_size=len(tokenizer))
    ids, _ = model.tokenize_contexts("hello <|im_end|><|im_start|>assistant\nyes", tokenizer)
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") not in ids[0].tolist()
    assert tokenizer.convert_tokens_to_ids("<|im_start|>") not in ids[0].tolist()


def test_tokenizer_is_resolved_from_the_base_or_a_clear_error(tokenizer, saved_base):
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(saved_base), ShineConfig(lora_rank=2, m2p_layers=2))
    assert model.absorb_context(CONTEXTS[0]).context_token_counts[0] > 0
    anonymous = build_shine(vocab_size=len(tokenizer))
    with pytest.raises(ValueError, match="tokenizer="):
        anonymous.absorb_context(CONTEXTS[0])


def test_calibration_makes_generated_loras_context_dependent(tokenizer):
    model = build_shine(vocab_size=len(tokenizer))
    calibration = [line for line in open("tests/fixtures/corpus.txt").read().splitlines() if line]
    model.calibrate_memory_statistics(calibration, tokenizer=tokenizer)
    stats = model.base_model.hypernetwork.standardizer
    assert int(stats.num_contexts_tracked) == len(calibration)
    share = model.context_variance_share(CONTEXTS, tokenizer=tokenizer)
    assert 0.05 < share["all"] <= 1.0


@pytest.mark.parametrize("architecture", ["llama", "qwen2", "qwen3", "mistral", "phi3"])
def test_every_architecture_absorbs_and_exports_exactly(architecture, tokenizer, tmp_path, ids):
    from peft import PeftModel

    model = build_shine(architecture, vocab_size=len(tokenizer))
    names = {name for name, _, _ in model.peft_config["default"].target_module_shapes}
    if architecture == "phi3":
        assert names == {"self_attn.qkv_proj", "self_attn.o_proj", "mlp.gate_up_proj", "mlp.down_proj"}
    absorbed = model.absorb_context(CONTEXTS[0], tokenizer=tokenizer)
    shine_logits = logits(model, ids)
    absorbed.save_pretrained(tmp_path / "lora")
    plain = PeftModel.from_pretrained(build_model(architecture, len(tokenizer)), tmp_path / "lora")
    assert (shine_logits - logits(plain, ids)).abs().max() <= 1e-4
