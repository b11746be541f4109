"""Teacher-forced log-likelihood of gold answers: the measure of "did the absorbed LoRA carry the answer's tokens"
that moves before F1 does (F1 of a three-piece name stays 0 until every piece is right).

For a record (context, question, answers) the answering pass is the question alone in the chat template followed by
the first gold answer's tokens; we sum log p(answer token | prompt, earlier answer tokens) under

- `none`: the base model (no context),
- `shine`: the LoRA absorbed from the record's context,
- `icl`: the base model with the context in the prompt (`ICL_TEMPLATE`), a reference point,

and report nats per answer token and the first answer token's log-probability separately.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from ..padding import IGNORE_INDEX, pad_id_of, right_pad
from ..tokenization import icl_prompt, question_prompt_ids

Record = dict[str, Any]
LIKELIHOOD_METHODS = ("none", "shine", "icl")


def answer_token_ids(tokenizer: PreTrainedTokenizerBase, answer: str) -> list[int]:
    """Plain-text token ids of an answer (no special tokens); ValueError for an answer without tokens."""
    ids = tokenizer(answer.strip(), add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError(f"The answer {answer!r} has no tokens.")
    return list(ids)


def _scored_rows(
    tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], answers: Sequence[str]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded (N, L) ids and mask of prompt + answer rows and (N, L) labels: answer tokens, -100 elsewhere."""
    rows, labels = [], []
    for prompt, answer in zip(prompts, answers, strict=True):
        prompt_ids, target = question_prompt_ids(tokenizer, prompt), answer_token_ids(tokenizer, answer)
        rows.append(prompt_ids + target)
        labels.append([-100] * len(prompt_ids) + target)
    ids, mask = right_pad(rows, pad_id_of(tokenizer))
    label_tensor, _ = right_pad(labels, IGNORE_INDEX)
    return ids, mask, label_tensor


@torch.no_grad()
def answer_log_likelihoods(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], answers: Sequence[str]
) -> list[dict[str, float]]:
    """Per row: {"sum": sum of answer-token log-probs, "tokens": answer token count, "first": log-prob of the first
    answer token} of `answers[i]` after the chat prompt of `prompts[i]`, under the model as it is now (whatever
    context it has absorbed; rows map to absorbed contexts context-major)."""
    ids, mask, labels = _scored_rows(tokenizer, prompts, answers)
    device = next(model.parameters()).device
    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
    log_probs = torch.log_softmax(logits[:, :-1], dim=-1)
    targets = labels[:, 1:].to(device)
    picked = log_probs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1) * (targets != -100)
    results = []
    for row in range(ids.shape[0]):
        positions = (targets[row] != -100).nonzero().squeeze(-1)
        results.append(
            {
                "sum": float(picked[row].sum()),
                "tokens": int(positions.numel()),
                "first": float(picked[row, positions[0]]),
            }
        )
    return results


def likelihood_gain_summary(per_record: dict[str, list[dict[str, float]]], baseline: str = "none") -> dict[str, Any]:
    """From per-record likelihoods of several methods: for each method, mean nats per answer token (token-weighted)
    and mean first-token log-prob, and for each non-baseline method its gain over `baseline`: per-token nats
    (token-weighted mean of the difference) and first-token nats."""
    summary: dict[str, Any] = {}
    for name, rows in per_record.items():
        tokens = sum(r["tokens"] for r in rows)
        summary[name] = {
            "nats_per_token": sum(r["sum"] for r in rows) / tokens,
            "first_token": float(np.mean([r["first"] for r in rows])),
        }
    for name, values in summary.items():
        if name != baseline and baseline in summary:
            values["gain_per_token"] = values["nats_per_token"] - summary[baseline]["nats_per_token"]
            values["gain_first_token"] = values["first_token"] - summary[baseline]["first_token"]
    return summary


def record_prompt(record: Record, method: str) -> str:
    """The user turn a method reads: the question alone, or for `icl` the context and the question."""
    return icl_prompt(record) if method == "icl" else record["question"]
