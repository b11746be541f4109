"""Question-answering evaluation of SHINE against baselines (no context, context in the prompt, per-context LoRA
fine-tuning), with SQuAD v1.1 metrics, bootstrap confidence intervals and timing.

Records are dicts with `context` (str), `question` (str), `answers` (list of gold answer strings) and optionally `id`
and `options` (multiple choice: `answers` then holds the text of the correct option). Every method answers with
greedy decoding and the user turn of the chat template:

- `none`: the base model (`model.forget()`), question alone;
- `icl`: the base model with the context in the prompt (`ICL_TEMPLATE`);
- `icl_short`: the same with a prompt that asks for a short answer copied from the text (`ICL_SHORT_TEMPLATE`);
- `shine`: `model.absorb_context(contexts)` once per distinct context, then the question alone;
- `sft`: a rank-8 LoRA trained on each context as language-model text, then the question alone.
"""

from __future__ import annotations

import functools
import json
import random
import re
import string
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .answer_likelihood import LIKELIHOOD_METHODS, answer_log_likelihoods, likelihood_gain_summary, record_prompt
from .data import _iter_jsonl
from .generation import generate_answers
from .tokenization import ICL_SHORT_TEMPLATE, ICL_TEMPLATES, icl_prompt

Record = dict[str, Any]
T = TypeVar("T")

SFT_LORA_RANK = 8
SFT_LORA_ALPHA = 16
PUNCTUATION = frozenset(string.punctuation)

# ----------------------------------------------------------------------------------------------------------------------
# Metrics (official SQuAD v1.1 normalisation)


def normalize_answer(text: str) -> str:
    """Lowercase, drop punctuation, drop the articles a / an / the, and collapse whitespace (SQuAD v1.1)."""
    text = "".join(ch for ch in text.lower() if ch not in PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _best_over_golds(metric: Callable[[str, str], float], prediction: str, golds: Sequence[str]) -> float:
    """The metric's maximum over the gold answers (there must be at least one)."""
    if isinstance(golds, str) or not golds:
        raise ValueError(f"golds must be a non-empty list of answer strings, got {golds!r}.")
    return max(metric(prediction, gold) for gold in golds)


def _exact_match_one(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def _f1_one(prediction: str, gold: str) -> float:
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    """1.0 when the normalised prediction equals a normalised gold answer, else 0.0."""
    return _best_over_golds(_exact_match_one, prediction, golds)


def f1(prediction: str, golds: Sequence[str]) -> float:
    """Token-level F1 of the normalised prediction, maximised over the gold answers. An empty prediction scores 0
    against a non-empty gold and 1 against an empty one."""
    return _best_over_golds(_f1_one, prediction, golds)


def chosen_option(prediction: str, options: Sequence[str]) -> str | None:
    """The option a prediction picks after normalisation: the option it equals, else the only option that occurs in
    it as whole words ("The answer is Paris." picks "Paris"); None when no option, or several, occur."""
    predicted = normalize_answer(prediction)
    normalized = [normalize_answer(option) for option in options]
    if predicted in normalized:
        return options[normalized.index(predicted)]
    contained = [option for option, text in zip(options, normalized) if text and f" {text} " in f" {predicted} "]
    return contained[0] if len(contained) == 1 else None


def option_accuracy(prediction: str, options: Sequence[str], golds: Sequence[str]) -> float:
    """1.0 when the option the prediction picks (`chosen_option`) is a gold answer after normalisation, else 0.0."""
    choice = chosen_option(prediction, options)
    return 0.0 if choice is None else exact_match(choice, golds)


def bootstrap_ci(
    values: Sequence[float], num_samples: int = 1000, seed: int = 0, alpha: float = 0.05
) -> tuple[float, float]:
    """Percentile bootstrap (1 - alpha) confidence interval of the mean of `values`."""
    if len(values) == 0:
        raise ValueError("bootstrap_ci needs at least one value.")
    data = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = [data[rng.integers(0, len(data), size=len(data))].mean() for _ in range(num_samples)]
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def _mean_with_ci(values: Sequence[float], seed: int) -> dict[str, float]:
    low, high = bootstrap_ci(values, seed=seed)
    return {"mean": float(np.mean(values)), "ci_low": low, "ci_high": high}


# ----------------------------------------------------------------------------------------------------------------------
# Records


def _is_text_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(item, str) for item in value)


def validate_record(record: Record, where: str = "record") -> None:
    """Raise ValueError unless `record` has a non-empty `context` and `question` and a non-empty list of `answers`
    (and, if present, a non-empty list of `options`)."""
    for key in ("context", "question"):
        if not isinstance(record.get(key), str) or not record[key].strip():
            raise ValueError(f"{where} needs a non-empty string {key!r}.")
    if not _is_text_list(record.get("answers")):
        raise ValueError(f"{where} needs 'answers': a non-empty list of strings.")
    if "options" in record and not _is_text_list(record["options"]):
        raise ValueError(f"{where} has 'options' that is not a non-empty list of strings.")


def _read_jsonl(path: Path) -> list[Record]:
    """The validated records of a JSONL(.gz) file; ValueError naming the file and line of a bad one."""
    records = []
    for where, record in _iter_jsonl(path):
        validate_record(record, where)
        records.append(record)
    return records


def load_eval_records(path: str | Path, limit: int | None = None, seed: int = 0) -> list[Record]:
    """Records from a JSONL or JSONL.gz file. With `limit`, a seeded random sample of that many records, kept in file
    order."""
    records = _read_jsonl(Path(path))
    if limit is None or limit >= len(records):
        return records
    if limit < 1:
        raise ValueError(f"limit must be a positive number of records, got {limit}.")
    keep = sorted(random.Random(seed).sample(range(len(records)), limit))
    return [records[i] for i in keep]


def group_by_context(records: Sequence[Record]) -> dict[str, list[int]]:
    """Distinct contexts (in order of first appearance) -> indices of the records that ask about them."""
    groups: dict[str, list[int]] = {}
    for index, record in enumerate(records):
        groups.setdefault(record["context"], []).append(index)
    return groups


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# ----------------------------------------------------------------------------------------------------------------------
# Timing and generation helpers


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter."""
    return next(model.parameters()).device


def timed(device: torch.device, function: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[T, float]:
    """Run `function(*args, **kwargs)`; return its result and the wall-clock seconds it took (CUDA synchronised)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    result = function(*args, **kwargs)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return result, time.perf_counter() - start


# ----------------------------------------------------------------------------------------------------------------------
# Methods


@dataclass(frozen=True)
class EvalSettings:
    """How the methods run: batching, generation length, the SFT baseline's training and its base-model loader."""

    batch_size: int = 8
    max_new_tokens: int = 32
    sft_epochs: int = 10
    sft_lr: float = 1e-3
    seed: int = 0
    base_factory: Callable[[], PreTrainedModel] | None = None


@dataclass
class MethodRun:
    """One method's answers (in record order) and its total adaptation and generation seconds."""

    predictions: list[str]
    num_contexts: int = 0
    adapt_seconds: float = 0.0
    generate_seconds: float = 0.0


MethodRunner = Callable[[PeftModel, PreTrainedTokenizerBase, Sequence[Record], EvalSettings, tqdm], MethodRun]


def _run_prompted(
    model: PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[Record],
    settings: EvalSettings,
    progress: tqdm,
    prompt: Callable[[Record], str],
) -> MethodRun:
    """The base model (after `forget()`) answers `prompt(record)` for each record, `batch_size` at a time."""
    model.forget()
    run = MethodRun(predictions=[])
    for batch in _chunks(records, settings.batch_size):
        texts = [prompt(record) for record in batch]
        answers, seconds = timed(
            model_device(model), model.ask, texts, max_new_tokens=settings.max_new_tokens, tokenizer=tokenizer
        )
        run.predictions.extend(answers)
        run.generate_seconds += seconds
        progress.update(len(batch))
    return run


def run_none(
    model: PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[Record],
    settings: EvalSettings,
    progress: tqdm,
) -> MethodRun:
    """No context: the base model answers the question alone."""
    return _run_prompted(model, tokenizer, records, settings, progress, lambda record: record["question"])


def run_icl(
    model: PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[Record],
    settings: EvalSettings,
    progress: tqdm,
) -> MethodRun:
    """In-context: the base model answers `ICL_TEMPLATE` (context, blank line, "Question: ...") as the user turn."""
    return _run_prompted(model, tokenizer, records, settings, progress, icl_prompt)


run_icl_short: MethodRunner = functools.partial(
    _run_prompted, prompt=functools.partial(icl_prompt, template=ICL_SHORT_TEMPLATE)
)
"""In-context with `ICL_SHORT_TEMPLATE`: the context and a request for a short answer copied from it."""


def question_rounds(groups: Sequence[Sequence[int]]) -> list[list[tuple[int, int]]]:
    """Split the questions of several contexts into rounds with at most one question per context: round j holds
    (context position, record index) for the j-th question of every context that has one."""
    longest = max(len(group) for group in groups)
    return [[(c, group[j]) for c, group in enumerate(groups) if j < len(group)] for j in range(longest)]


def run_shine(
    model: PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[Record],
    settings: EvalSettings,
    progress: tqdm,
) -> MethodRun:
    """SHINE: each batch of up to `batch_size` distinct contexts is absorbed in one pass; their questions are then
    asked in rounds of one question per context (row i uses context i). The model forgets afterwards."""
    run = MethodRun(predictions=[""] * len(records), num_contexts=len(group_by_context(records)))
    device = model_device(model)
    for indices, absorb_seconds in absorbed_rounds(model, tokenizer, records, settings.batch_size):
        run.adapt_seconds += absorb_seconds
        questions = [records[index]["question"] for index in indices]
        answers, seconds = timed(
            device, model.ask, questions, max_new_tokens=settings.max_new_tokens, tokenizer=tokenizer
        )
        for index, answer in zip(indices, answers):
            run.predictions[index] = answer
        run.generate_seconds += seconds
        progress.update(len(indices))
    return run


def absorbed_rounds(
    model: PeftModel, tokenizer: PreTrainedTokenizerBase, records: Sequence[Record], batch_size: int
) -> Iterator[tuple[list[int], float]]:
    """Absorb the distinct contexts `batch_size` at a time and yield, for each round of one question per context,
    (record indices, seconds of the absorb that round belongs to, 0 after its first round) with the model set to
    those records' contexts (row i uses the context of record indices[i]). The model forgets at the end."""
    device = model_device(model)
    for batch in _chunks(list(group_by_context(records).items()), batch_size):
        absorbed, seconds = timed(device, model.absorb_context, [context for context, _ in batch], tokenizer=tokenizer)
        for round_ in question_rounds([indices for _, indices in batch]):
            model.use_context(absorbed.select([position for position, _ in round_]))
            yield [index for _, index in round_], seconds
            seconds = 0.0
    model.forget()


def sft_target_modules(model: PeftModel) -> list[str]:
    """The module names SHINE adapts, as last path components ("self_attn.q_proj" -> "q_proj")."""
    targets = model.peft_config[model.active_adapter].target_modules
    return sorted({name.rsplit(".", 1)[-1] for name in targets})


def build_sft_model(base: PreTrainedModel, target_modules: list[str], device: torch.device, seed: int) -> PeftModel:
    """A plain base model on `device` wrapped with a fresh, seeded rank-8 LoRA (alpha 16) on `target_modules`."""
    if model_device(base) != device:
        base = base.to(device)
    torch.manual_seed(seed)
    config = LoraConfig(
        r=SFT_LORA_RANK,
        lora_alpha=SFT_LORA_ALPHA,
        lora_dropout=0.0,
        target_modules=target_modules,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(base, config).eval()


def train_on_context(model: PeftModel, context_ids: torch.Tensor, epochs: int, lr: float) -> None:
    """Fit the model's trainable parameters to one context (1, T) with the causal LM loss: one AdamW step per epoch.
    A one-token context has no next token to predict and is not trained on."""
    if context_ids.shape[1] < 2:
        return
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    with torch.enable_grad():
        for _ in range(epochs):
            model(input_ids=context_ids, labels=context_ids).loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    model.eval()


def _trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: param.detach().clone() for name, param in model.named_parameters() if param.requires_grad}


def _restore(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name in state:
                param.copy_(state[name])


def _require_base_factory(settings: EvalSettings) -> None:
    if settings.base_factory is None:
        raise ValueError("The 'sft' method needs base_factory: a callable that returns a plain copy of the base model.")


def run_sft(
    model: PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[Record],
    settings: EvalSettings,
    progress: tqdm,
) -> MethodRun:
    """Per-context fine-tuning: for each distinct context, a fresh LoRA (the same seeded initialisation each time) on
    a plain base from `settings.base_factory` is trained on the context's tokens (as SHINE reads them) for
    `sft_epochs` AdamW steps, then answers the context's questions alone. The plain base is a second copy of the model
    in memory; it is loaded once per run."""
    _require_base_factory(settings)
    device = model_device(model)
    sft_model = build_sft_model(settings.base_factory(), sft_target_modules(model), device, settings.seed)
    initial = _trainable_state(sft_model)
    groups = group_by_context(records)
    run = MethodRun(predictions=[""] * len(records), num_contexts=len(groups))
    for context, indices in groups.items():
        _restore(sft_model, initial)
        context_ids, _ = model.tokenize_contexts([context], tokenizer)
        _, seconds = timed(device, train_on_context, sft_model, context_ids, settings.sft_epochs, settings.sft_lr)
        run.adapt_seconds += seconds
        for batch in _chunks(indices, settings.batch_size):
            questions = [records[index]["question"] for index in batch]
            answers, seconds = timed(device, generate_answers, sft_model, tokenizer, questions, settings.max_new_tokens)
            for index, answer in zip(batch, answers):
                run.predictions[index] = answer
            run.generate_seconds += seconds
            progress.update(len(batch))
    return run


METHODS: dict[str, MethodRunner] = {
    "none": run_none,
    "icl": run_icl,
    "icl_short": run_icl_short,
    "shine": run_shine,
    "sft": run_sft,
}


# ----------------------------------------------------------------------------------------------------------------------
# Teacher-forced answer likelihood (see peft_shine.answer_likelihood)


def likelihood_runs(
    model: PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[Record],
    methods: Sequence[str],
    batch_size: int,
) -> dict[str, list[dict[str, float]]]:
    """Per-record log-likelihood of the first gold answer (`answer_log_likelihoods`) for each of `methods` among
    none / shine / icl: none and icl with no context absorbed, shine with each record's context absorbed (in batches
    of `batch_size` distinct contexts, one question per context per forward pass)."""
    results: dict[str, list[dict[str, float]]] = {}
    for method in [m for m in methods if m in LIKELIHOOD_METHODS]:
        rows: list[dict[str, float]] = [{}] * len(records)
        model.forget()
        if method == "shine":
            for indices, _ in absorbed_rounds(model, tokenizer, records, batch_size):
                chosen = [records[index] for index in indices]
                scored = answer_log_likelihoods(
                    model, tokenizer, [r["question"] for r in chosen], [r["answers"][0] for r in chosen]
                )
                for index, score in zip(indices, scored):
                    rows[index] = score
        else:
            for start in range(0, len(records), batch_size):
                chosen = records[start : start + batch_size]
                prompts = [record_prompt(r, method) for r in chosen]
                scored = answer_log_likelihoods(model, tokenizer, prompts, [r["answers"][0] for r in chosen])
                rows[start : start + len(chosen)] = scored
        results[method] = rows
    return results


# ----------------------------------------------------------------------------------------------------------------------
# Question splits: open-vocabulary answers (the copying skill) and the rest


def _words(text: str) -> set[str]:
    return set(normalize_answer(text).split())


def is_open_vocabulary(record: Record, no_context_prediction: str) -> bool:
    """True when the first gold answer has a (normalised) word that neither the question nor the base model's
    no-context answer contains: the answer has to be copied from the context."""
    return bool(_words(record["answers"][0]) - _words(record["question"]) - _words(no_context_prediction))


def copied_share(record: Record, prediction: str, no_context_prediction: str) -> float | None:
    """Share of the gold answer's new words (normalised words of the first gold answer that neither the question nor
    the no-context answer contains) that the prediction contains: 1.0 when every piece only the context could give was
    copied; None when the answer has no new word. Unlike F1 it gives no credit for generic words (gold "Ostrel River",
    answer "Borlok River": F1 0.5, copied 0.0)."""
    novel = _words(record["answers"][0]) - _words(record["question"]) - _words(no_context_prediction)
    if not novel:
        return None
    return len(novel & _words(prediction)) / len(novel)


def question_splits(records: Sequence[Record], no_context_predictions: Sequence[str] | None) -> dict[str, list[int]]:
    """Record indices per split: "open_vocabulary" / "other" (see `is_open_vocabulary`; needs the `none` method's
    predictions) and "kind=<answer_kind>" for records that carry an `answer_kind` (e.g. `peft_shine.synthetic`)."""
    splits: dict[str, list[int]] = {}
    if no_context_predictions is not None:
        for index, (record, prediction) in enumerate(zip(records, no_context_predictions)):
            name = "open_vocabulary" if is_open_vocabulary(record, prediction) else "other"
            splits.setdefault(name, []).append(index)
    for index, record in enumerate(records):
        if "answer_kind" in record:
            splits.setdefault(f"kind={record['answer_kind']}", []).append(index)
    return splits


def split_scores(
    method: str,
    method_summary: dict[str, Any],
    splits: dict[str, list[int]],
    likelihoods: dict[str, list[dict[str, float]]] | None,
    seed: int,
) -> dict[str, Any]:
    """F1 (mean and CI) of one method on each split, and, when `likelihoods` hold that method's and `none`'s
    per-record likelihoods, its nats per answer token and first-token log-prob with the gains over `none`."""
    items = method_summary["predictions"]
    result = {}
    for name, indices in splits.items():
        entry = {"count": len(indices), "f1": _mean_with_ci([items[i]["f1"] for i in indices], seed)}
        copied = [items[i]["copied"] for i in indices if items[i].get("copied") is not None]
        if copied:
            entry["copied"] = _mean_with_ci(copied, seed)
        if likelihoods and method in likelihoods and "none" in likelihoods:
            subset = {key: [likelihoods[key][i] for i in indices] for key in (method, "none")}
            entry["likelihood"] = likelihood_gain_summary(subset)[method]
        result[name] = entry
    return result


def gap_closure(results: dict[str, Any]) -> dict[str, Any] | None:
    """(F1(shine) - F1(none)) / (F1(best in-prompt) - F1(none)), the paper's gap closure, against the best of the
    in-prompt methods that ran; None unless shine, none and an in-prompt method ran."""
    methods = results["methods"]
    prompted = {name: methods[name]["f1"]["mean"] for name in methods if name in ICL_TEMPLATES}
    if "shine" not in methods or "none" not in methods or not prompted:
        return None
    best = max(prompted, key=prompted.get)
    none = methods["none"]["f1"]["mean"]
    gap = prompted[best] - none
    value = (methods["shine"]["f1"]["mean"] - none) / gap if gap > 0 else None
    return {"best_in_prompt": best, "closure": value}


# ----------------------------------------------------------------------------------------------------------------------
# Evaluation and reports


def score_predictions(records: Sequence[Record], predictions: Sequence[str]) -> list[dict[str, Any]]:
    """Per-record F1 and EM (and `accuracy` for records with `options`) of the predictions."""
    scored = []
    for index, (record, prediction) in enumerate(zip(records, predictions)):
        item = {
            "id": record.get("id", index),
            "question": record["question"],
            "prediction": prediction,
            "answers": list(record["answers"]),
            "f1": f1(prediction, record["answers"]),
            "em": exact_match(prediction, record["answers"]),
        }
        if "options" in record:
            item["accuracy"] = option_accuracy(prediction, record["options"], record["answers"])
        scored.append(item)
    return scored


def summarize_run(records: Sequence[Record], run: MethodRun, seed: int) -> dict[str, Any]:
    """Mean and bootstrap CI of F1 / EM (and option accuracy when records have options), timing and predictions."""
    scored = score_predictions(records, run.predictions)
    summary: dict[str, Any] = {
        "f1": _mean_with_ci([item["f1"] for item in scored], seed),
        "em": _mean_with_ci([item["em"] for item in scored], seed),
    }
    accuracies = [item["accuracy"] for item in scored if "accuracy" in item]
    if accuracies:
        summary["accuracy"] = _mean_with_ci(accuracies, seed)
    summary["adapt_seconds_per_context"] = run.adapt_seconds / run.num_contexts if run.num_contexts else 0.0
    summary["generate_seconds_per_question"] = run.generate_seconds / len(records)
    summary["predictions"] = scored
    return summary


def _check_methods(methods: Sequence[str], settings: EvalSettings) -> None:
    unknown = [name for name in methods if name not in METHODS]
    if unknown:
        raise ValueError(f"Unknown method(s) {unknown}; choose from {list(METHODS)}.")
    if "sft" in methods:
        _require_base_factory(settings)
    if settings.batch_size < 1 or settings.max_new_tokens < 1 or settings.sft_epochs < 0:
        raise ValueError("batch_size and max_new_tokens must be positive and sft_epochs non-negative.")


def evaluate(
    model: PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[Record],
    methods: Sequence[str] = ("none", "icl", "shine"),
    batch_size: int = 8,
    max_new_tokens: int = 32,
    base_factory: Callable[[], PreTrainedModel] | None = None,
    sft_epochs: int = 10,
    seed: int = 0,
    sft_lr: float = 1e-3,
    likelihood: bool = False,
    reference: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Answer every record with each method and score the answers; the model is in eval mode meanwhile and ends with
    no context absorbed. With `likelihood`, also the teacher-forced log-likelihood of the first gold answer under
    none / shine / icl (those of `methods`; see `peft_shine.answer_likelihood`).

    Returns a JSON-serialisable dict: `num_records`; `methods`: name -> {`f1`, `em` (and `accuracy` when records have
    `options`): {`mean`, `ci_low`, `ci_high`}, `adapt_seconds_per_context` (0 for methods without adaptation),
    `generate_seconds_per_question`, `predictions`: [{`id`, `question`, `prediction`, `answers`, `f1`, `em` (and
    `accuracy`; `copied` when `none` ran, see `copied_share`; with `likelihood`: `log_likelihood` {`sum`, `tokens`,
    `first`})}] in record order, `splits`: split name -> {`count`, `f1`, `copied`, with `likelihood`: `likelihood`
    (see `split_scores`)}, with `likelihood`: `likelihood` {`nats_per_token`, `first_token`, gains over none}};
    `splits`: split name -> record indices (`question_splits`:
    open-vocabulary answers, the rest, and answer kinds); `gap_closure` (see `gap_closure`); `config`: the settings.
    `base_factory` (a loader of the plain base model) is required for the `sft` method.

    `reference`: the results of an earlier `evaluate` on the same records (same ids, same order) that ran `none`
    (with `likelihood` if this run has it). When `none` is not among `methods`, its predictions and likelihoods are
    taken from there for the splits and likelihood gains, so comparing many SHINE adapters runs the baseline once.
    """
    settings = EvalSettings(batch_size, max_new_tokens, sft_epochs, sft_lr, seed, base_factory)
    _check_methods(methods, settings)
    if not records:
        raise ValueError("No records to evaluate.")
    for index, record in enumerate(records):
        validate_record(record, f"record {index}")
    was_training = model.training
    model.eval()
    try:
        results = {name: _evaluate_method(name, model, tokenizer, records, settings) for name in methods}
        likelihoods = likelihood_runs(model, tokenizer, records, methods, batch_size) if likelihood else None
    finally:
        model.forget()
        model.train(was_training)
    no_context = results["none"]["predictions"] if "none" in results else _reference_none(reference, records)
    if likelihoods is not None and "none" not in likelihoods and no_context is not None:
        if all("log_likelihood" in item for item in no_context):
            likelihoods["none"] = [item["log_likelihood"] for item in no_context]
    if likelihoods:
        gains = likelihood_gain_summary(likelihoods)
        for name, rows in likelihoods.items():
            if name in results:
                results[name]["likelihood"] = gains[name]
                for item, row in zip(results[name]["predictions"], rows):
                    item["log_likelihood"] = row
    no_context = [item["prediction"] for item in no_context] if no_context is not None else None
    if no_context is not None:
        for summary in results.values():
            for item, record, baseline in zip(summary["predictions"], records, no_context):
                item["copied"] = copied_share(record, item["prediction"], baseline)
    splits = question_splits(records, no_context)
    for name, summary in results.items():
        summary["splits"] = split_scores(name, summary, splits, likelihoods, seed)
    config = {key: value for key, value in asdict(settings).items() if key != "base_factory"}
    config.update(
        methods=list(methods),
        icl_templates={name: ICL_TEMPLATES[name] for name in methods if name in ICL_TEMPLATES},
        likelihood=likelihood,
        base_model=getattr(model, "name_or_path", None),
    )
    output = {"num_records": len(records), "methods": results, "splits": splits, "config": config}
    output["gap_closure"] = gap_closure(output)
    return output


def _reference_none(reference: dict[str, Any] | None, records: Sequence[Record]) -> list[dict] | None:
    """The `none` per-item results of `reference`, checked to be about the same records; None without a reference."""
    if reference is None:
        return None
    items = reference.get("methods", {}).get("none", {}).get("predictions")
    if items is None:
        raise ValueError("The reference results hold no 'none' method; evaluate the baseline with methods=('none',).")
    if [item["question"] for item in items] != [record["question"] for record in records]:
        raise ValueError("The reference results were computed on other records (questions differ); use the same file.")
    return items


def _evaluate_method(
    name: str, model: PeftModel, tokenizer: PreTrainedTokenizerBase, records: Sequence[Record], settings: EvalSettings
) -> dict[str, Any]:
    with tqdm(total=len(records), desc=name, unit="question") as progress:
        run = METHODS[name](model, tokenizer, records, settings, progress)
    return summarize_run(records, run, settings.seed)


def _percent(summary: dict[str, float]) -> str:
    return f"{100 * summary['mean']:.1f}"


def _with_ci(score: dict[str, float]) -> str:
    return f"{_percent(score)} [{100 * score['ci_low']:.1f}, {100 * score['ci_high']:.1f}]"


def markdown_table(results: dict[str, Any]) -> str:
    """A Markdown table of the results: method | F1 (95% CI) | EM | [accuracy |] F1 per split | [likelihood gain
    per token / first token |] adapt s/context | gen s/question, then the gap closure when it is defined."""
    methods = results["methods"]
    splits = results.get("splits", {})
    with_accuracy = any("accuracy" in summary for summary in methods.values())
    with_likelihood = any("likelihood" in summary for summary in methods.values())
    header = ["method", "F1 (95% CI)", "EM"] + (["accuracy"] if with_accuracy else [])
    header += [f"F1 {name} (n={len(indices)})" for name, indices in splits.items()]
    header += ["LL gain nats/token", "LL gain first token"] if with_likelihood else []
    header += ["adapt s/context", "gen s/question"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, summary in methods.items():
        cells = [name, _with_ci(summary["f1"]), _percent(summary["em"])]
        if with_accuracy:
            cells.append(_percent(summary["accuracy"]) if "accuracy" in summary else "-")
        cells += [_with_ci(summary["splits"][split]["f1"]) for split in splits]
        if with_likelihood:
            gain = summary.get("likelihood", {})
            cells += [f"{gain[key]:+.3f}" if key in gain else "-" for key in ("gain_per_token", "gain_first_token")]
        cells += [f"{summary['adapt_seconds_per_context']:.4f}", f"{summary['generate_seconds_per_question']:.4f}"]
        lines.append("| " + " | ".join(cells) + " |")
    closure = results.get("gap_closure")
    if closure and closure["closure"] is not None:
        lines.append(
            f"\nGap closure (shine - none) / ({closure['best_in_prompt']} - none): {100 * closure['closure']:.1f}%"
        )
    return "\n".join(lines) + "\n"


def save_results(results: dict[str, Any], path: str | Path) -> None:
    """Write the results as JSON (indent 2) to `path` and as a Markdown table to the same path with suffix `.md`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    path.with_suffix(".md").write_text(markdown_table(results), encoding="utf-8")
