"""Answer metrics: the official SQuAD v1.1 normalisation, exact match and token F1 over several gold answers, the
option a multiple-choice prediction picks, and percentile-bootstrap confidence intervals."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

PUNCTUATION = frozenset(string.punctuation)


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


def mean_with_ci(values: Sequence[float], seed: int) -> dict[str, float]:
    """Mean and percentile-bootstrap 95% interval of the values: {"mean", "ci_low", "ci_high"}."""
    low, high = bootstrap_ci(values, seed=seed)
    return {"mean": float(np.mean(values)), "ci_low": low, "ci_high": high}
