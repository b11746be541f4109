"""The speed benchmark's sections: each measures one thing over `Settings` and returns its part of the results."""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

import torch
from peft import PeftModel
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from benchmarks.common import Measurement, Subject, max_positions, measure
from benchmarks.speed.inputs import (
    DECODE_QUESTION,
    QUESTIONS,
    Settings,
    absorb_limit,
    context_limit,
    context_text,
    context_tokens,
    generate_exactly,
    questions_for,
)
from peft_shine.absorbed import AbsorbedContext
from peft_shine.evaluation import EvalSettings, build_sft_model, icl_prompt, sft_target_modules, train_on_context
from peft_shine.tokenization import question_prompt_ids


def measure_runs(
    settings: Settings, device: torch.device, function: Callable[..., Any], *args: Any, **kwargs: Any
) -> Measurement:
    """`measure` of `function(*args, **kwargs)` with the settings' warm-up and repeats."""
    return measure(device, functools.partial(function, *args, **kwargs), settings.repeats, settings.warmup)


def contexts_within_limits(
    subject: Subject, lengths: Sequence[int], limit_name: str, too_long: Callable[[int, str], str | None]
) -> tuple[list[tuple[int, str]], list[dict[str, Any]]]:
    """The contexts a section measures, `(requested tokens, context_text)` for each of `lengths` in order, and the
    lengths it skips, each `{"context_tokens": requested, "reason": ...}`: those above `absorb_limit` (the reason
    calls it `limit_name`) and those `too_long(requested, text)` gives a reason for (the base's positions)."""
    limit = absorb_limit(subject.model)
    contexts, skipped = [], []
    for requested in lengths:
        if limit is not None and requested > limit:
            reason = f"above the {limit_name} of {limit} context tokens"
        else:
            text = context_text(subject.tokenizer, requested)
            reason = too_long(requested, text)
        if reason is None:
            contexts.append((requested, text))
        else:
            skipped.append({"context_tokens": requested, "reason": reason})
    return contexts, skipped


def bench_absorb_latency(subject: Subject, settings: Settings, device: torch.device) -> dict[str, Any]:
    """`absorb_context(text)` (tokenisation, the encode pass over context + memory tokens, the hypernetwork) against a
    plain forward of the base (SHINE forgotten) over the same context ids, without cache and with logits for the last
    position only, as a prefill computes them."""
    model, tokenizer = subject.model, subject.tokenizer
    positions = max_positions(model)

    def too_long(requested: int, text: str) -> str | None:
        above = positions is not None and requested > positions
        return f"the plain forward is above {positions} positions" if above else None

    contexts, skipped = contexts_within_limits(subject, settings.context_lengths, "limit", too_long)
    rows = []
    for requested, text in contexts:
        ids, mask = model.tokenize_contexts(text, tokenizer)
        model.forget()
        forward = measure_runs(
            settings, device, model, input_ids=ids, attention_mask=mask, use_cache=False, logits_to_keep=1
        )
        tokenize = measure_runs(settings, device, model.tokenize_contexts, text, tokenizer)
        absorb = measure_runs(settings, device, model.absorb_context, text, tokenizer=tokenizer)
        num_chunks = len(model.base_model.context_chunks(text, tokenizer)[0])
        model.forget()
        rows.append(
            {
                "context_tokens_requested": requested,
                "context_tokens": int(mask.sum()),
                "chunks": num_chunks,
                "forward_s": forward.median_s,
                "absorb_s": absorb.median_s,
                "tokenize_s": tokenize.median_s,
                "ratio": absorb.median_s / forward.median_s,
                "forward_peak_mib": forward.peak_mib,
                "absorb_peak_mib": absorb.peak_mib,
                "forward_times_s": forward.times_s,
                "absorb_times_s": absorb.times_s,
            }
        )
    return {"context_limit": context_limit(model), "rows": rows, "skipped": skipped}


def merged_model(subject: Subject, absorbed: AbsorbedContext, device: torch.device) -> PreTrainedModel:
    """A fresh base with the absorbed context's exported LoRA merged into its weights."""
    with tempfile.TemporaryDirectory() as folder:
        absorbed.save_pretrained(folder)
        base = subject.base_factory().to(device)
        return PeftModel.from_pretrained(base, folder).merge_and_unload().eval()


def bench_decoding(subject: Subject, settings: Settings, device: torch.device) -> dict[str, Any]:
    """Greedy decoding of exactly `decode_tokens` tokens after a fixed question (batch 1, prefill included) by the
    base (SHINE forgotten), SHINE with an absorbed LoRA, and a fresh base with that LoRA exported and merged."""
    model, tokenizer = subject.model, subject.tokenizer
    prompt = question_prompt_ids(tokenizer, DECODE_QUESTION)
    text = context_text(tokenizer, min(settings.context_tokens, context_limit(model)))
    decode = functools.partial(
        generate_exactly, tokenizer=tokenizer, prompt_ids=prompt, new_tokens=settings.decode_tokens
    )
    absorbed = model.absorb_context(text, tokenizer=tokenizer)
    variants = {
        "base": (model, None),
        "shine_unmerged": (model, absorbed),
        "merged": (merged_model(subject, absorbed, device), None),
    }
    rows, tokens = [], {}
    for name, (target, context) in variants.items():
        model.use_context(context)
        tokens[name] = decode(target).tolist()
        timing = measure_runs(settings, device, decode, target)
        rows.append(
            {
                "variant": name,
                "seconds": timing.median_s,
                "tokens_per_s": settings.decode_tokens / timing.median_s,
                "generated_tokens": len(tokens[name]),
                "peak_mib": timing.peak_mib,
            }
        )
    model.forget()
    base_rate = rows[0]["tokens_per_s"]
    for row in rows:
        row["relative_to_base"] = row["tokens_per_s"] / base_rate
    return {
        "new_tokens": settings.decode_tokens,
        "prompt_tokens": len(prompt),
        "rows": rows,
        "merged_matches_unmerged": tokens["merged"] == tokens["shine_unmerged"],
    }


def answer_in_context(
    model: PeftModel, tokenizer: PreTrainedTokenizerBase, text: str, questions: Sequence[str], answer_tokens: int
) -> None:
    """ICL: the base (SHINE forgotten) prefills context + question and decodes, once per question."""
    model.forget()
    for question in questions:
        prompt = question_prompt_ids(tokenizer, icl_prompt({"context": text, "question": question}))
        generate_exactly(model, tokenizer, prompt, answer_tokens)


def answer_absorbed(
    model: PeftModel, tokenizer: PreTrainedTokenizerBase, text: str, questions: Sequence[str], answer_tokens: int
) -> None:
    """SHINE: absorb the context once, then prefill each question alone and decode."""
    model.absorb_context(text, tokenizer=tokenizer)
    for question in questions:
        generate_exactly(model, tokenizer, question_prompt_ids(tokenizer, question), answer_tokens)
    model.forget()


def bench_icl_vs_shine(subject: Subject, settings: Settings, device: torch.device) -> dict[str, Any]:
    """Seconds and peak memory to answer Q questions (`answer_tokens` each) about one context, ICL against SHINE."""
    model, tokenizer = subject.model, subject.tokenizer
    positions = max_positions(model)

    def too_long(requested: int, text: str) -> str | None:
        if positions is None:
            return None
        longest_prompt = max(
            len(question_prompt_ids(tokenizer, icl_prompt({"context": text, "question": q}))) for q in QUESTIONS
        )
        above = longest_prompt + settings.answer_tokens > positions
        return f"ICL prompt + answer above {positions} positions" if above else None

    contexts, skipped = contexts_within_limits(subject, settings.icl_context_lengths, "SHINE limit", too_long)
    rows = []
    for requested, text in contexts:
        for count in settings.question_counts:
            arguments = (model, tokenizer, text, questions_for(count), settings.answer_tokens)
            icl = measure_runs(settings, device, answer_in_context, *arguments)
            shine = measure_runs(settings, device, answer_absorbed, *arguments)
            rows.append(
                {
                    "context_tokens_requested": requested,
                    "context_tokens": context_tokens(model, tokenizer, text),
                    "questions": count,
                    "icl_s": icl.median_s,
                    "shine_s": shine.median_s,
                    "speedup": icl.median_s / shine.median_s,
                    "icl_peak_mib": icl.peak_mib,
                    "shine_peak_mib": shine.peak_mib,
                }
            )
    return {"answer_tokens": settings.answer_tokens, "rows": rows, "skipped": skipped}


def bench_batched_absorb(subject: Subject, settings: Settings, device: torch.device) -> dict[str, Any]:
    """Contexts/s of one `absorb_context` call over a batch of distinct contexts of `context_tokens` tokens."""
    model, tokenizer = subject.model, subject.tokenizer
    length = min(settings.context_tokens, context_limit(model))
    rows = []
    for batch_size in settings.batch_sizes:
        texts = [context_text(tokenizer, length, offset=7 * i) for i in range(batch_size)]
        timing = measure_runs(settings, device, model.absorb_context, texts, tokenizer=tokenizer)
        rows.append(
            {
                "batch_size": batch_size,
                "seconds": timing.median_s,
                "contexts_per_s": batch_size / timing.median_s,
                "peak_mib": timing.peak_mib,
            }
        )
    model.forget()
    return {"context_tokens": length, "rows": rows}


def bench_absorb_vs_sft(subject: Subject, settings: Settings, device: torch.device) -> dict[str, Any]:
    """Seconds to adapt the model to one `context_tokens`-token context: `absorb_context` against the `sft` baseline
    of `peft-shine eval` (a fresh rank-8 LoRA on SHINE's modules of a plain base, trained on the context as
    language-model text for `EvalSettings.sft_epochs` AdamW steps)."""
    model, tokenizer = subject.model, subject.tokenizer
    text = context_text(tokenizer, min(settings.context_tokens, context_limit(model)))
    ids, _ = model.tokenize_contexts(text, tokenizer)
    baseline = EvalSettings()
    sft_model = build_sft_model(subject.base_factory(), sft_target_modules(model), device, baseline.seed)
    absorb = measure_runs(settings, device, model.absorb_context, text, tokenizer=tokenizer)
    model.forget()
    sft = measure_runs(
        settings, device, train_on_context, sft_model, ids.to(device), baseline.sft_epochs, baseline.sft_lr
    )
    return {
        "context_tokens": int(ids.shape[1]),
        "sft_epochs": baseline.sft_epochs,
        "sft_lr": baseline.sft_lr,
        "absorb_s": absorb.median_s,
        "sft_s": sft.median_s,
        "speedup": sft.median_s / absorb.median_s,
        "absorb_peak_mib": absorb.peak_mib,
        "sft_peak_mib": sft.peak_mib,
    }
