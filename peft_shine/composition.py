"""Combining generated LoRAs: chunks of one long document, several documents, or an appended text, by
concatenation along the rank axis (the weighted deltas add up exactly), and compression to a rank budget by a
truncated SVD computed on the low-rank factors (the in x out delta is never formed).

Shapes: A (in, r), B (r, out) for one context; batched A (C, in, R), B (C, R, out).
"""

from __future__ import annotations

import torch

Factors = tuple[torch.Tensor, torch.Tensor]


def concat_along_rank(parts: list[Factors], weights: list[float] | None = None) -> Factors:
    """[(A_i (in, r_i), B_i (r_i, out))] -> (in, sum r_i), (sum r_i, out) with A B = sum_i w_i A_i B_i."""
    if weights is None:
        weights = [1.0] * len(parts)
    a = torch.cat([a for a, _ in parts], dim=-1)
    b = torch.cat([b * w if w != 1.0 else b for (_, b), w in zip(parts, weights, strict=True)], dim=-2)
    return a, b


def combination_weights(chunk_counts: list[int], combination: str) -> list[float] | None:
    """Weights of parts holding `chunk_counts` chunks each when their deltas are combined: each part's share of all
    chunks under `combination="mean"` (a mean over chunks), None (a plain sum) under "sum"."""
    if combination == "sum":
        return None
    total = sum(chunk_counts)
    return [count / total for count in chunk_counts]


def check_weight_count(weights: list[float] | None, num_contexts: int) -> None:
    """Raise ValueError unless `weights` is None or holds one weight per context."""
    if weights is not None and len(weights) != num_contexts:
        raise ValueError(f"Got {len(weights)} weights for {num_contexts} contexts.")


def stack_padded(contexts: list[Factors]) -> Factors:
    """Per-context factors of ranks r_c -> A (C, in, R), B (C, R, out), R = max r_c, zero-padded (zero rank
    components add nothing to the delta)."""
    rank = max(a.shape[-1] for a, _ in contexts)
    stacked_a = torch.stack([torch.nn.functional.pad(a, (0, rank - a.shape[-1])) for a, _ in contexts])
    stacked_b = torch.stack([torch.nn.functional.pad(b, (0, 0, 0, rank - b.shape[-2])) for _, b in contexts])
    return stacked_a, stacked_b


def compress_rank(a: torch.Tensor, b: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    """Best rank-`rank` approximation of A B (Frobenius), from QR of A and B^T and an SVD of the R x R core.

    Returns (A_k (in, k), B_k (k, out), squared error, squared norm of A B), with k = min(rank, R); the error is
    zero when k reaches the rank of A B.
    """
    dtype = a.dtype
    qa, ra = torch.linalg.qr(a.double())  # (in, R), (R, R)
    qb, rb = torch.linalg.qr(b.double().T)  # (out, R), (R, R)
    u, s, vh = torch.linalg.svd(ra @ rb.T)  # A B = qa (ra rb^T) qb^T
    k = min(rank, s.shape[0])
    root = s[:k].sqrt()
    a_k = qa @ (u[:, :k] * root)
    b_k = ((qb @ vh[:k].T) * root).T
    return a_k.to(dtype), b_k.to(dtype), float(s[k:].square().sum()), float(s.square().sum())
