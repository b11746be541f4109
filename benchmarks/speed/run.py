"""Speed and memory benchmark of SHINE against the plain base model.

    python benchmarks/speed/run.py --device auto --output_dir runs/speed
    python benchmarks/speed/run.py --quick --device cpu --output_dir /tmp/speed   # tiny smoke configuration

Measures (warm-up runs, then the median of `--repeats` device-synchronised runs; peak memory over the measured runs):
1. `absorb_context` latency against a plain no-grad forward of the base over the same context tokens;
2. greedy decoding tokens/s of the base, SHINE with an absorbed LoRA (unmerged) and the exported LoRA merged;
3. time and memory to answer Q questions about a growing context: in the prompt (ICL) or absorbed once (SHINE);
4. batched absorb throughput (contexts/s).

Writes `results.json`, `results.md` and `absorb_latency.png`, `icl_vs_shine.png`, `batched_absorb.png` to
`--output_dir`. Without `--base`/`--adapter` the embedded default (SmolLM2-135M-Instruct + the shipped hypernetwork)
is used.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable (benchmarks.common)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

# ruff: noqa: E402
import argparse
import functools
import re
import resource
import statistics
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from matplotlib.figure import Figure
from peft import PeftModel
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from benchmarks.common import (
    Subject,
    add_run_arguments,
    log2_axis,
    machine_info,
    markdown_table,
    max_positions,
    subject_on_device,
    write_results,
)
from peft_shine.absorbed import AbsorbedContext
from peft_shine.evaluation import (
    EvalSettings,
    build_sft_model,
    icl_prompt,
    model_device,
    sft_target_modules,
    timed,
    train_on_context,
)
from peft_shine.padding import pad_id_of
from peft_shine.tokenization import encode_plain, question_prompt_ids

PARAGRAPH = (
    "The lighthouse on Marrow Point was built in 1871 by the engineer Clara Vennet, who had studied bridge design in "
    "Glasgow. Its tower is 38 metres tall and painted in red and white bands. The first keeper, Tomas Hale, kept a "
    "logbook of every ship that passed; in the storm of 1893 he guided the steamer Aurora into the harbour. The lamp "
    "was electrified in 1924 and automated in 1987, when the last keeper, Ingrid Solberg, retired to the village."
)
QUESTIONS = [
    "Who built the lighthouse on Marrow Point?",
    "When was the lighthouse built?",
    "Where did the engineer study?",
    "How tall is the tower?",
    "What colours is the tower painted?",
    "Who was the first keeper?",
    "What did the first keeper record?",
    "Which steamer was guided into the harbour?",
    "In which storm was the steamer guided in?",
    "When was the lamp electrified?",
    "When was the lighthouse automated?",
    "Who was the last keeper?",
    "Where did the last keeper retire to?",
    "What did Clara Vennet design before?",
    "What kind of ship was the Aurora?",
    "How many keepers are named in the text?",
]
DECODE_QUESTION = "Tell me about the lighthouse on Marrow Point."

TARGET_ABSORB_TOKENS = 512
TARGET_ABSORB_RATIO = 1.3
TARGET_DECODE_RELATIVE = 0.85
TARGET_SFT_SPEEDUP = 100.0
MIB = 2**20


@dataclass(frozen=True)
class Settings:
    """What is measured: context lengths, question counts, batch sizes, generated tokens, warm-up and repeats."""

    context_lengths: tuple[int, ...] = (128, 256, 512, 1024, 2048, 4096)
    decode_tokens: int = 64
    icl_context_lengths: tuple[int, ...] = (256, 512, 1024, 2048)
    question_counts: tuple[int, ...] = (1, 4, 16)
    answer_tokens: int = 16
    batch_sizes: tuple[int, ...] = (1, 2, 4, 8, 16)
    context_tokens: int = 256  # context of the decoding LoRA and of each batched-absorb context
    warmup: int = 2
    repeats: int = 5


QUICK = Settings(
    context_lengths=(16, 32),
    decode_tokens=4,
    icl_context_lengths=(16, 32),
    question_counts=(1, 2),
    answer_tokens=2,
    batch_sizes=(1, 2),
    context_tokens=16,
    warmup=1,
    repeats=1,
)


# ----------------------------------------------------------------------------------------------------------------------
# Measuring


def _proc_status_bytes(field: str) -> int:
    """A `kB` field of /proc/self/status (VmRSS, VmHWM) in bytes."""
    match = re.search(rf"^{field}:\s*(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    if match is None:
        raise OSError(f"/proc/self/status has no {field}")
    return int(match.group(1)) * 1024


def _max_rss_bytes() -> int:
    """The process's peak RSS from getrusage (kilobytes on Linux, bytes on macOS)."""
    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return value if sys.platform == "darwin" else value * 1024


class PeakMemory:
    """`with PeakMemory(device) as peak:` -> `peak.mib`, the most memory the block used above what was in use when it
    began; `peak.metric` says how it was measured.

    CUDA: `torch.cuda.max_memory_allocated` after `reset_peak_memory_stats`, minus `memory_allocated` at the start
    (tensors only, not the caching allocator's reserve). CPU: process RSS, so allocator caching and other threads
    count; on Linux the kernel's peak-RSS counter is reset through /proc/self/clear_refs, elsewhere only the growth of
    the lifetime peak (`ru_maxrss`) is seen.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.mib = 0.0
        self.metric = ""
        self._start = 0
        self._read_peak: Callable[[], int] = _max_rss_bytes

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._read_peak = functools.partial(torch.cuda.max_memory_allocated, self.device)
            self.metric = "CUDA: torch.cuda.max_memory_allocated during the runs minus memory_allocated before (MiB)"
            return self
        try:
            Path("/proc/self/clear_refs").write_text("5")  # Linux >= 4.0: peak RSS (VmHWM) := current RSS
            self._start = _proc_status_bytes("VmRSS")
            self._read_peak = functools.partial(_proc_status_bytes, "VmHWM")
            self.metric = "CPU: peak RSS during the runs minus RSS before (VmHWM reset via /proc/self/clear_refs; MiB)"
        except OSError:
            self._start = _max_rss_bytes()
            self.metric = (
                "CPU: growth of the process's lifetime peak RSS (getrusage ru_maxrss; 0 if below an earlier peak)"
            )
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.mib = max(self._read_peak() - self._start, 0) / MIB


def memory_metric(device: torch.device) -> str:
    """How `PeakMemory` measures on `device`."""
    with PeakMemory(device) as probe:
        pass
    return probe.metric


@dataclass
class Measurement:
    """Median and all measured seconds of a function, and its peak extra memory over the measured runs."""

    median_s: float
    times_s: list[float]
    peak_mib: float


@torch.no_grad()
def measure(device: torch.device, settings: Settings, function: Callable[[], Any]) -> Measurement:
    """`settings.warmup` unmeasured runs, then `settings.repeats` timed runs (CUDA synchronised) under `PeakMemory`."""
    for _ in range(settings.warmup):
        function()
    with PeakMemory(device) as peak:
        times = [timed(device, function)[1] for _ in range(settings.repeats)]
    return Measurement(statistics.median(times), times, peak.mib)


# ----------------------------------------------------------------------------------------------------------------------
# Inputs


def context_text(tokenizer: PreTrainedTokenizerBase, num_tokens: int, offset: int = 0) -> str:
    """`PARAGRAPH` repeated, starting `offset` tokens in, cut to a text of at most (almost always exactly)
    `num_tokens` tokens when encoded as SHINE encodes contexts."""
    unit = encode_plain(tokenizer, [PARAGRAPH + "\n\n"])[0]
    ids = unit * ((offset + num_tokens) // len(unit) + 1)
    for cut in range(num_tokens, 0, -1):
        text = tokenizer.decode(ids[offset : offset + cut])
        if len(encode_plain(tokenizer, [text])[0]) <= num_tokens:
            return text
    raise ValueError(f"Cannot build a context of {num_tokens} tokens with this tokenizer.")


def questions_for(count: int) -> list[str]:
    """The first `count` of `QUESTIONS` (cycled)."""
    return [QUESTIONS[i % len(QUESTIONS)] for i in range(count)]


def context_limit(model: PeftModel) -> int:
    """The longest context SHINE encodes in one pass: `max_context_tokens`, with context + memory tokens within the
    positions."""
    config = model.base_model.shine_config
    positions = max_positions(model)
    if positions is None:
        return config.max_context_tokens
    return min(config.max_context_tokens, positions - config.num_memory_tokens)


def absorb_limit(model: PeftModel) -> int | None:
    """The longest context `absorb_context` accepts: None (any length) when it chunks longer contexts
    (`context_overflow="chunk"`), else `context_limit`."""
    return None if model.base_model.shine_config.context_overflow == "chunk" else context_limit(model)


def context_tokens(model: PeftModel, tokenizer: PreTrainedTokenizerBase, text: str) -> int:
    """Tokens of `text` as `absorb_context` reads it."""
    return int(model.tokenize_contexts(text, tokenizer)[1].sum())


@torch.no_grad()
def generate_exactly(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, prompt_ids: list[int], new_tokens: int
) -> torch.Tensor:
    """Greedy continuation of one prompt of exactly `new_tokens` tokens (min = max new tokens); returns the new ids."""
    ids = torch.tensor([prompt_ids], device=model_device(model))
    output = model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=False,
        pad_token_id=pad_id_of(tokenizer),
    )
    return output[0, ids.shape[1] :]


# ----------------------------------------------------------------------------------------------------------------------
# Benchmarks


def bench_absorb_latency(subject: Subject, settings: Settings, device: torch.device) -> dict[str, Any]:
    """`absorb_context(text)` (tokenisation, the encode pass over context + memory tokens, the hypernetwork) against a
    plain forward of the base (SHINE forgotten) over the same context ids, without cache and with logits for the last
    position only, as a prefill computes them."""
    model, tokenizer = subject.model, subject.tokenizer
    limit, positions = absorb_limit(model), max_positions(model)
    rows, skipped = [], []
    for requested in settings.context_lengths:
        if limit is not None and requested > limit:
            skipped.append({"context_tokens": requested, "reason": f"above the limit of {limit} context tokens"})
            continue
        if positions is not None and requested > positions:
            skipped.append({"context_tokens": requested, "reason": f"the plain forward is above {positions} positions"})
            continue
        text = context_text(tokenizer, requested)
        ids, mask = model.tokenize_contexts(text, tokenizer)
        model.forget()
        forward = measure(
            device,
            settings,
            functools.partial(model, input_ids=ids, attention_mask=mask, use_cache=False, logits_to_keep=1),
        )
        tokenize = measure(device, settings, functools.partial(model.tokenize_contexts, text, tokenizer))
        absorb = measure(device, settings, functools.partial(model.absorb_context, text, tokenizer=tokenizer))
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
        timing = measure(device, settings, functools.partial(decode, target))
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
    limit, positions = absorb_limit(model), max_positions(model)
    rows, skipped = [], []
    for requested in settings.icl_context_lengths:
        if limit is not None and requested > limit:
            skipped.append({"context_tokens": requested, "reason": f"above the SHINE limit of {limit} context tokens"})
            continue
        text = context_text(tokenizer, requested)
        longest_prompt = max(
            len(question_prompt_ids(tokenizer, icl_prompt({"context": text, "question": q}))) for q in QUESTIONS
        )
        if positions is not None and longest_prompt + settings.answer_tokens > positions:
            skipped.append({"context_tokens": requested, "reason": f"ICL prompt + answer above {positions} positions"})
            continue
        for count in settings.question_counts:
            arguments = (model, tokenizer, text, questions_for(count), settings.answer_tokens)
            icl = measure(device, settings, functools.partial(answer_in_context, *arguments))
            shine = measure(device, settings, functools.partial(answer_absorbed, *arguments))
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
        timing = measure(device, settings, functools.partial(model.absorb_context, texts, tokenizer=tokenizer))
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
    absorb = measure(device, settings, functools.partial(model.absorb_context, text, tokenizer=tokenizer))
    model.forget()
    sft = measure(
        device,
        settings,
        functools.partial(train_on_context, sft_model, ids.to(device), baseline.sft_epochs, baseline.sft_lr),
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


def check_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The three speed targets, each with its measured value and whether it was met (None: not measured)."""
    ratio = next(
        (
            row["ratio"]
            for row in results["absorb_latency"]["rows"]
            if row["context_tokens_requested"] == TARGET_ABSORB_TOKENS
        ),
        None,
    )
    relative = next(
        row["relative_to_base"] for row in results["decoding"]["rows"] if row["variant"] == "shine_unmerged"
    )
    speedup = results["absorb_vs_sft"]["speedup"]
    return [
        {
            "target": f"absorb / forward latency at {TARGET_ABSORB_TOKENS} context tokens",
            "goal": f"<= {TARGET_ABSORB_RATIO}",
            "value": ratio,
            "met": None if ratio is None else ratio <= TARGET_ABSORB_RATIO,
        },
        {
            "target": "SHINE unmerged decoding tokens/s relative to the base",
            "goal": f">= {TARGET_DECODE_RELATIVE}",
            "value": relative,
            "met": relative >= TARGET_DECODE_RELATIVE,
        },
        {
            "target": "sft adaptation time / absorb time for one context",
            "goal": f">= {TARGET_SFT_SPEEDUP:g}",
            "value": speedup,
            "met": speedup >= TARGET_SFT_SPEEDUP,
        },
    ]


# ----------------------------------------------------------------------------------------------------------------------
# Reports


def _ms(seconds: float) -> str:
    return f"{1000 * seconds:.1f}"


def _skipped(section: dict[str, Any]) -> str:
    return "".join(f"\nSkipped {item['context_tokens']} tokens: {item['reason']}.\n" for item in section["skipped"])


def markdown_report(results: dict[str, Any]) -> str:
    """The results as Markdown: the machine, the targets and one table per benchmark."""
    machine, model = results["machine"], results["model"]
    absorb, decoding = results["absorb_latency"], results["decoding"]
    icl, batched, sft = results["icl_vs_shine"], results["batched_absorb"], results["absorb_vs_sft"]
    met = {True: "met", False: "NOT met", None: "not measured"}
    parts = [
        "# SHINE speed benchmark\n",
        f"`{machine['command']}`\n",
        f"{machine['device_name']} ({machine['device']}), {machine['cpu_cores']} CPU cores ({machine['cpu_model']}), "
        f"torch {machine['torch']}, {machine['platform']}. Model: {model['base']} + SHINE adapter {model['adapter']} "
        f"({model['dtype']}, {model['num_memory_tokens']} memory tokens). Median of {results['settings']['repeats']} "
        f"runs after {results['settings']['warmup']} warm-up runs. Memory: {results['memory_metric']}.\n",
        "## Targets\n",
        markdown_table(
            ["target", "goal", "measured", "status"],
            [
                [t["target"], t["goal"], "-" if t["value"] is None else f"{t['value']:.3f}", met[t["met"]]]
                for t in results["targets"]
            ],
        ),
        "## Absorb latency vs a plain forward\n",
        "Absorb = `absorb_context(text)` (tokenisation + encode pass over context and memory tokens + hypernetwork); "
        "forward = the base with SHINE forgotten over the same ids (no grad, `use_cache=False`, last logits only). "
        f"Contexts above {absorb['context_limit']} tokens are absorbed in chunks (one batched encode pass, chunk "
        "LoRAs concatenated along the rank axis); the forward reads them in one pass.\n",
        markdown_table(
            [
                "context tokens",
                "chunks",
                "forward ms",
                "absorb ms",
                "(tokenize ms)",
                "absorb/forward",
                "fwd peak MiB",
                "abs MiB",
            ],
            [
                [
                    str(row["context_tokens"]),
                    str(row["chunks"]),
                    _ms(row["forward_s"]),
                    _ms(row["absorb_s"]),
                    _ms(row["tokenize_s"]),
                    f"{row['ratio']:.2f}",
                    f"{row['forward_peak_mib']:.1f}",
                    f"{row['absorb_peak_mib']:.1f}",
                ]
                for row in absorb["rows"]
            ],
        )
        + _skipped(absorb),
        "## Decoding\n",
        f"Greedy, batch 1, exactly {decoding['new_tokens']} new tokens after a {decoding['prompt_tokens']}-token "
        f"prompt (prefill included). Merged greedy tokens equal unmerged: {decoding['merged_matches_unmerged']}.\n",
        markdown_table(
            ["variant", "seconds", "tokens/s", "relative to base", "peak MiB"],
            [
                [
                    row["variant"],
                    f"{row['seconds']:.3f}",
                    f"{row['tokens_per_s']:.1f}",
                    f"{row['relative_to_base']:.2f}",
                    f"{row['peak_mib']:.1f}",
                ]
                for row in decoding["rows"]
            ],
        ),
        "## ICL vs SHINE\n",
        f"Seconds to answer Q questions ({icl['answer_tokens']} tokens each, one at a time) about one context: ICL "
        "prefills context + question for every question; SHINE absorbs once and asks the questions alone.\n",
        markdown_table(
            ["context tokens", "Q", "ICL s", "SHINE s", "ICL / SHINE", "ICL peak MiB", "SHINE peak MiB"],
            [
                [
                    str(row["context_tokens"]),
                    str(row["questions"]),
                    f"{row['icl_s']:.3f}",
                    f"{row['shine_s']:.3f}",
                    f"{row['speedup']:.2f}",
                    f"{row['icl_peak_mib']:.1f}",
                    f"{row['shine_peak_mib']:.1f}",
                ]
                for row in icl["rows"]
            ],
        )
        + _skipped(icl),
        "## Batched absorb\n",
        f"One `absorb_context` call over a batch of distinct {batched['context_tokens']}-token contexts.\n",
        markdown_table(
            ["batch size", "ms per call", "contexts/s", "peak MiB"],
            [
                [str(row["batch_size"]), _ms(row["seconds"]), f"{row['contexts_per_s']:.1f}", f"{row['peak_mib']:.1f}"]
                for row in batched["rows"]
            ],
        ),
        "## Absorb vs per-context fine-tuning\n",
        f"Adapting to one {sft['context_tokens']}-token context: `absorb_context` against the `sft` baseline of "
        f"`peft-shine eval` (a fresh rank-8 LoRA on the same modules, {sft['sft_epochs']} AdamW steps at lr "
        f"{sft['sft_lr']:g} on the context as language-model text). The answer quality each reaches: "
        "`benchmarks/adaptation/`.\n",
        markdown_table(
            ["absorb s", "sft s", "sft / absorb", "absorb peak MiB", "sft peak MiB"],
            [
                [
                    f"{sft['absorb_s']:.3f}",
                    f"{sft['sft_s']:.3f}",
                    f"{sft['speedup']:.1f}",
                    f"{sft['absorb_peak_mib']:.1f}",
                    f"{sft['sft_peak_mib']:.1f}",
                ]
            ],
        ),
    ]
    return "\n".join(parts)


def plot_absorb_latency(section: dict[str, Any], path: Path) -> None:
    """Latency of absorb and forward (left) and their ratio with the target (right) against context length."""
    figure = Figure(figsize=(10, 4), layout="constrained")
    latency, ratio = figure.subplots(1, 2)
    tokens = [row["context_tokens"] for row in section["rows"]]
    latency.plot(tokens, [1000 * row["forward_s"] for row in section["rows"]], "o-", label="plain forward")
    latency.plot(tokens, [1000 * row["absorb_s"] for row in section["rows"]], "s-", label="absorb_context")
    latency.set(yscale="log", ylabel="ms", title="Latency")
    latency.legend()
    ratio.plot(tokens, [row["ratio"] for row in section["rows"]], "o-", label="absorb / forward")
    ratio.axhline(TARGET_ABSORB_RATIO, color="red", linestyle="--", label=f"target {TARGET_ABSORB_RATIO}x")
    ratio.set(ylabel="ratio", title="Absorb overhead")
    ratio.legend()
    for axis in (latency, ratio):
        log2_axis(axis, tokens, "context tokens")
    figure.savefig(path, dpi=120)


def plot_icl_vs_shine(section: dict[str, Any], path: Path) -> None:
    """Seconds to answer Q questions against context length (one panel per Q), and peak memory at the largest Q."""
    counts = sorted({row["questions"] for row in section["rows"]})
    figure = Figure(figsize=(4 * (len(counts) + 1), 4), layout="constrained")
    axes = figure.subplots(1, len(counts) + 1, squeeze=False)[0]
    for axis, count in zip(axes, counts):
        rows = [row for row in section["rows"] if row["questions"] == count]
        tokens = [row["context_tokens"] for row in rows]
        axis.plot(tokens, [row["icl_s"] for row in rows], "o-", label="ICL (context in prompt)")
        axis.plot(tokens, [row["shine_s"] for row in rows], "s-", label="SHINE (absorb once)")
        axis.set(yscale="log", ylabel="seconds", title=f"Q = {count}")
        log2_axis(axis, tokens, "context tokens")
        axis.legend()
    rows = [row for row in section["rows"] if counts and row["questions"] == counts[-1]]
    tokens = [row["context_tokens"] for row in rows]
    memory = axes[-1]
    memory.plot(tokens, [row["icl_peak_mib"] for row in rows], "o-", label="ICL")
    memory.plot(tokens, [row["shine_peak_mib"] for row in rows], "s-", label="SHINE")
    memory.set(ylabel="peak MiB", title="Peak memory (largest Q)")
    log2_axis(memory, tokens, "context tokens")
    memory.legend()
    figure.savefig(path, dpi=120)


def plot_batched_absorb(section: dict[str, Any], path: Path) -> None:
    """Absorb throughput (contexts/s) against batch size."""
    figure = Figure(figsize=(5, 4), layout="constrained")
    axis = figure.subplots()
    sizes = [row["batch_size"] for row in section["rows"]]
    axis.plot(sizes, [row["contexts_per_s"] for row in section["rows"]], "o-")
    axis.set(ylabel="contexts / s", title=f"Batched absorb, {section['context_tokens']}-token contexts")
    log2_axis(axis, sizes, "batch size")
    figure.savefig(path, dpi=120)


def write_outputs(results: dict[str, Any], output_dir: Path) -> None:
    """`results.json`, `results.md` and the three PNG plots in `output_dir`."""
    write_results(results, markdown_report(results), output_dir)
    plot_absorb_latency(results["absorb_latency"], output_dir / "absorb_latency.png")
    plot_icl_vs_shine(results["icl_vs_shine"], output_dir / "icl_vs_shine.png")
    plot_batched_absorb(results["batched_absorb"], output_dir / "batched_absorb.png")


# ----------------------------------------------------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    """The command line options (the model a test passes to `main` has no option)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(
        parser,
        "runs/speed",
        "where results and plots go (default runs/speed)",
        "tiny smoke configuration (seconds, numbers meaningless)",
    )
    parser.add_argument("--warmup", type=int, help="unmeasured runs before each measurement (default 2)")
    parser.add_argument("--repeats", type=int, help="measured runs; the median is reported (default 5)")
    return parser


def main(argv: Sequence[str] | None = None, *, subject: Subject | None = None) -> dict[str, Any]:
    """Run every benchmark and write the outputs; returns the results. `subject` (for tests) replaces the model that
    `--base`/`--adapter` would load."""
    args = build_parser().parse_args(argv)
    settings = QUICK if args.quick else Settings()
    overrides = {name: getattr(args, name) for name in ("warmup", "repeats") if getattr(args, name) is not None}
    settings = replace(settings, **overrides)
    if settings.warmup < 0 or settings.repeats < 1:
        raise SystemExit("error: --warmup must be >= 0 and --repeats >= 1")
    subject, device, model = subject_on_device(args, subject)
    results: dict[str, Any] = {
        "machine": machine_info(device),
        "model": model,
        "settings": {**asdict(settings), "quick": args.quick},
        "memory_metric": memory_metric(device),
    }
    benchmarks = {
        "absorb_latency": bench_absorb_latency,
        "decoding": bench_decoding,
        "icl_vs_shine": bench_icl_vs_shine,
        "batched_absorb": bench_batched_absorb,
        "absorb_vs_sft": bench_absorb_vs_sft,
    }
    for name, benchmark in benchmarks.items():
        print(f"[speed] {name} ...", file=sys.stderr, flush=True)
        results[name] = benchmark(subject, settings, device)
    results["targets"] = check_targets(results)
    output_dir = Path(args.output_dir)
    write_outputs(results, output_dir)
    print(markdown_report(results))
    print(f"[speed] wrote {output_dir}/results.json, results.md and 3 plots", file=sys.stderr)
    return results


if __name__ == "__main__":
    main()
