"""What PEFT's own shared tests do over SHINE: the committed expectation table of `test_peft_suite.py`.

Every PEFT test that the run collects (`plugin.py`) has an entry per mode ("plain": no context; "context": a fixed
context absorbed for every forward, so the adapter acts), per model where they differ:

- `PASS`: it must pass (a label says when it passes without exercising SHINE);
- `SKIP`: PEFT itself skips it for SHINE (its message must contain one of `messages`), e.g. LoRA-only tests;
- `NA`: not applicable to SHINE: it must fail, with a message containing one of `messages`, for the reason given (a test
  that fails for another reason, or starts passing, fails the comparison).

`python -m tests.peft_suite.expectations` prints the Markdown table of docs/peft_conformance.md.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

PEFT_VERSION = "0.21.2"  # the peft version this table was made with
MODES = ("plain", "context")
MODELS = ("llama", "qwen2")


@dataclass(frozen=True)
class Expected:
    outcome: str  # "passed", "skipped" or "failed"
    label: str = ""  # short reason shown in the table ("" for a plain pass)
    why: str = ""  # the reason in full, shown in the legend
    messages: tuple[str, ...] = ()  # the skip or failure message must contain one of these
    may_pass: bool = False  # a documented failure that float noise can turn into a pass


def PASS(label: str = "", why: str = "") -> Expected:
    return Expected("passed", label, why)


def SKIP(label: str, why: str, *messages: str) -> Expected:
    return Expected("skipped", label, why, messages)


def NA(label: str, why: str, *messages: str, may_pass: bool = False) -> Expected:
    return Expected("failed", label, why, messages, may_pass)


# ---------------------------------------------------------------------------------------------------------------------
# Why SHINE does not do what a test checks, and the message that shows it

ONE_ADAPTER = NA(
    "one adapter",
    "SHINE holds one adapter per model; the test adds or loads a second one, which SHINE refuses before the model "
    "changes (load another SHINE adapter onto a fresh base model)",
    "A model holds one SHINE adapter",
)
MERGE = NA(
    "no merge",
    "a SHINE adapter is a hypernetwork, not weights, so merging is refused with the way out: merge the plain LoRA "
    "exported from an absorbed context (`ctx.save_pretrained`, then `merge_and_unload`)",
    "cannot be merged",
)
PICKLE = NA(
    "no pickles",
    "SHINE loads `adapter_model.safetensors` only and never unpickles `adapter_model.bin` (the error says how to "
    "convert a trusted one)",
    "adapter_model.bin, a pickle",
)
NO_CONTEXT_GRAD = NA(
    "no context, no gradient",
    "without a context SHINE computes the frozen base model, so the output has no gradient; the test calls "
    "`backward()` on it (with a context the same test passes)",
    "does not require grad",
)
NO_CONTEXT_SAME = NA(
    "no context, base output",
    "without a context SHINE computes exactly the base model, and the test asserts that the adapter changes the "
    "output (with a context it does)",
    "assert not True",
)
NOISE = NA(
    "no context, base output (float noise)",
    "as *no context, base output*, but the check can pass by float noise: the outputs differ by ~6e-8 because CPU "
    "kernels change once PEFT freezes the base, which the test's default `allclose` tolerance sees",
    "assert not True",
    may_pass=True,
)
FLOAT32_ADAPTER = NA(
    "float32 adapter",
    "SHINE keeps the hypernetwork and the meta-LoRA in float32 whatever the base dtype (`autocast_adapter_dtype=False`"
    " does not lower them; the generated factors are cast to each layer's dtype, docs/errors.md); the test also adds "
    "a second adapter",
    "{torch.float32} <= {torch.float16}",
    "{torch.float32} <= {torch.bfloat16}",
)
LLAMA_NO_BIAS = SKIP(
    "Llama skipped",
    'PEFT skips these for every model id containing "llama" and every method (`check_beft_config`), as in its own CI',
    "Skip tests for Llama models because layers have no bias term",
)
PROMPT_TUNING_ONLY = SKIP("prompt tuning only", "PEFT runs it for prompt tuning only", "This test does not apply to")
PROMPT_LEARNING_ONLY = SKIP(
    "prompt learning only",
    "PEFT runs it for prompt learning only",
    "Test not applicable for",
    "only for prompt learning methods",
)
LORA_ONLY = SKIP(
    "LoRA only",
    "PEFT runs it for LoRA only (mixed batches also for RoAD, weighted adapters also for IA3)",
    "Mixed adapter batches not supported",
    "Test not applicable for",
)
NO_BIAS_OPTION = SKIP("no bias option", "PEFT runs it for methods with a `bias` option", "'bias' argument")
NO_CONVERSION = PASS(
    "returns early",
    "PEFT returns early since `supports_lora_conversion()` is False for SHINE: a SHINE adapter becomes a plain LoRA "
    "through an absorbed context (`ctx.save_pretrained`)",
)


def both(expected: Expected) -> dict[str, Expected]:
    return {"plain": expected, "context": expected}


def per_model(llama: Expected, qwen2: Expected) -> dict[str, Expected]:
    return {"llama": llama, "qwen2": qwen2}


# ---------------------------------------------------------------------------------------------------------------------
# The table: PEFT test (with its own parameters) -> mode -> expected outcome (or model -> expected outcome)

EXPECTED: dict[str, dict[str, Expected | dict[str, Expected]]] = {
    # test_decoder_models.py, in file order
    "test_attributes_parametrized": both(PASS()),
    "test_adapter_name": both(PASS()),
    "test_add_adapter_no_autocast_adapter_dtype[dtype=float16]": both(FLOAT32_ADAPTER),
    "test_add_adapter_no_autocast_adapter_dtype[dtype=bfloat16]": both(FLOAT32_ADAPTER),
    "test_prepare_for_training_parametrized": both(PASS()),
    "test_prompt_tuning_text_prepare_for_training": both(PROMPT_TUNING_ONLY),
    "test_prompt_tuning_sample_vocab_prepare_for_training": both(PROMPT_TUNING_ONLY),
    "test_save_pretrained": both(PASS()),
    "test_save_pretrained_pickle": both(PICKLE),
    "test_save_pretrained_selected_adapters": both(ONE_ADAPTER),
    "test_save_pretrained_selected_adapters_pickle": both(ONE_ADAPTER),
    "test_from_pretrained_config_construction": both(PASS()),
    "test_merge_layers": both(per_model(LLAMA_NO_BIAS, MERGE)),
    "test_merge_layers_multi": both(per_model(LLAMA_NO_BIAS, ONE_ADAPTER)),
    "test_merge_layers_nan": both(per_model(LLAMA_NO_BIAS, MERGE)),
    "test_mixed_adapter_batches": both(LORA_ONLY),
    "test_generate_with_mixed_adapter_batches": both(LORA_ONLY),
    "test_generate": both(PASS()),
    "test_generate_pos_args": both(PASS()),
    "test_merge_layers_fp16": both(per_model(LLAMA_NO_BIAS, MERGE)),
    "test_generate_half_prec": both(PASS()),
    "test_training_decoders": {"plain": NO_CONTEXT_GRAD, "context": PASS()},
    "test_training_decoders_layer_indexing": {"plain": NO_CONTEXT_GRAD, "context": PASS()},
    "test_training_decoders_gradient_checkpointing[use_reentrant=True]": {"plain": NO_CONTEXT_GRAD, "context": PASS()},
    "test_training_decoders_gradient_checkpointing[use_reentrant=False]": {"plain": NO_CONTEXT_GRAD, "context": PASS()},
    "test_inference_safetensors": {"plain": NO_CONTEXT_GRAD, "context": PASS()},
    "test_peft_model_device_map": both(PASS()),
    "test_delete_adapter": both(ONE_ADAPTER),
    "test_delete_inactive_adapter": both(ONE_ADAPTER),
    "test_adding_multiple_adapters_with_bias_raises": both(NO_BIAS_OPTION),
    "test_unload_adapter": {"plain": NO_CONTEXT_SAME, "context": PASS()},
    "test_weighted_combination_of_adapters": both(LORA_ONLY),
    "test_training_prompt_learning_tasks": both(PROMPT_LEARNING_ONLY),
    "test_disable_adapter": {"plain": NOISE, "context": PASS()},
    "test_passing_input_embeds_works": both(PASS()),
    "test_set_requires_grad_prompt_learning_raises": both(PROMPT_LEARNING_ONLY),
    "test_lora_conversion": both(NO_CONVERSION),
    "test_get_base_model_state_dict": both(PASS()),
    # PeftCommonTester methods test_decoder_models.py does not call (run by shared_methods.py)
    "_test_delete_unknown_adapter_raises": both(PASS()),
    "_test_load_model_low_cpu_mem_usage": both(ONE_ADAPTER),
    "_test_load_multiple_adapters": both(ONE_ADAPTER),
    "_test_merge_layers_is_idempotent": both(MERGE),
    "_test_safe_merge": {"plain": NO_CONTEXT_SAME, "context": MERGE},
    "_test_save_pretrained_adapter_name_substring": both(ONE_ADAPTER),
}

# Tests of test_decoder_models.py that are not parametrized over PEFT's config rows: each checks one named PEFT method
# (LoRA, AdaLoRA, prompt/prefix tuning) on a Hub model, so the run deselects them.
NOT_PARAMETRIZED = (
    "test_generate_adalora_no_dropout",
    "test_lora_embed_scale_is_applied",
    "test_lora_embed_scale_is_applied_mixed_batch",
    "test_lora_layer_replication",
    "test_merge_and_unload_fixes_tie_word_embeddings_config",
    "test_prefix_tuning_gemma4_raises_if_all_layers_skipped",
    "test_prefix_tuning_gemma4_warns_if_some_layers_skipped",
    "test_prefix_tuning_gemma4_works",
    "test_prefix_tuning_mistral",
    "test_prefix_tuning_offsets_position_ids_in_forward",
    "test_prefix_tuning_qwen2_with_grouped_query_attention",
    "test_prefix_tuning_qwen3_with_grouped_query_attention",
    "test_prompt_learning_with_gradient_checkpointing",
    "test_prompt_tuning_config_invalid_args",
    "test_prompt_tuning_prepare_inputs_for_generation_4d_attention_mask",
    "test_prompt_tuning_text_tokenizer_kwargs",
    "test_prompt_tuning_trust_remote_code",
    "test_save_pretrained_targeting_lora_to_embedding_layer",
)


def expected_for(test: str, mode: str, model: str) -> Expected | None:
    """The expected outcome of one run of `test`, or None when the table does not list it."""
    entry = EXPECTED.get(test, {}).get(mode)
    if isinstance(entry, dict):
        entry = entry.get(model)
    return entry


def differences(results: list[dict[str, str]], deselected: list[str]) -> list[str]:
    """Every way a run's results (`plugin.py`: test, mode, model, outcome, message) depart from the table: a test that
    newly fails or is newly skipped, a not-applicable or skipped one that now passes, one that fails or is skipped for
    another reason than documented, one missing from the table or from the run, and a change in the tests that the
    run deselects."""
    problems, seen = [], set()
    for result in results:
        test, mode, model, outcome = result["test"], result["mode"], result["model"], result["outcome"]
        full = " ".join(result["message"].split())
        message = full[:300]
        where = f"{test} [{mode}, {model}]"
        seen.add((test, mode))
        expected = expected_for(test, mode, model)
        if expected is None:
            problems.append(f"{where}: {outcome}, but the table does not list it: {message}")
        elif outcome == expected.outcome or (outcome == "passed" and expected.may_pass):
            if outcome != "passed" and not any(text in full for text in expected.messages):
                problems.append(
                    f"{where}: {outcome} as listed, but not for the listed reason ({expected.label}: "
                    f"{' or '.join(map(repr, expected.messages))}): {message}"
                )
        elif expected.outcome == "passed":
            problems.append(f"{where}: newly {outcome}: {message}")
        elif outcome == "passed":
            problems.append(f"{where}: listed as {_cell(expected)}, but now passes: list it as PASS()")
        else:
            problems.append(f"{where}: listed as {_cell(expected)}, but {outcome}: {message}")
    for test, modes in EXPECTED.items():
        problems += [f"{test} [{mode}]: listed in the table, but not run" for mode in modes if (test, mode) not in seen]
    if sorted(deselected) != sorted(NOT_PARAMETRIZED):
        added, gone = sorted(set(deselected) - set(NOT_PARAMETRIZED)), sorted(set(NOT_PARAMETRIZED) - set(deselected))
        problems.append(f"the tests outside PEFT's config rows changed: new {added}, gone {gone} (NOT_PARAMETRIZED)")
    return problems


# ---------------------------------------------------------------------------------------------------------------------
# The table in docs/peft_conformance.md


def _cell(entry: Expected | dict[str, Expected]) -> str:
    if isinstance(entry, dict):
        if len(set(entry.values())) == 1:
            return _cell(next(iter(entry.values())))
        return "; ".join(f"{model}: {_cell(value)}" for model, value in entry.items())
    text = {"passed": "passes", "skipped": "skipped by PEFT", "failed": "n/a"}[entry.outcome]
    return f"{text} ({entry.label})" if entry.label else text


def _reasons() -> list[Expected]:
    found: list[Expected] = []
    for modes in EXPECTED.values():
        for entry in modes.values():
            for value in entry.values() if isinstance(entry, dict) else [entry]:
                if value.label and value not in found:
                    found.append(value)
    return found


def markdown_table() -> str:
    """One row per PEFT test with its outcome in each mode, then one row per reason."""
    rows = ["| PEFT test | no context | context absorbed |", "|---|---|---|"]
    for test, modes in EXPECTED.items():
        rows.append(f"| `{test}` | {_cell(modes['plain'])} | {_cell(modes['context'])} |")
    rows += ["", "| reason | outcome | why | message it must show |", "|---|---|---|---|"]
    for value in _reasons():
        outcome = {"passed": "passes", "skipped": "skipped by PEFT", "failed": "n/a (fails)"}[value.outcome]
        messages = " or ".join(f"`{text}`" for text in value.messages)
        rows.append(f"| {value.label} | {outcome} | {value.why} | {messages} |")
    return "\n".join(rows)


if __name__ == "__main__":
    sys.stdout.write(markdown_table() + "\n")
