"""`AbsorbedContext`: the LoRA adapters generated from one or more contexts, exportable as plain PEFT LoRA."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from huggingface_hub import ModelCard
from peft import LoraConfig
from safetensors.torch import save_file

from .cards import LoraFacts, lora_card
from .composition import (
    Factors,
    check_weight_count,
    combination_weights,
    compress_rank,
    concat_along_rank,
    stack_padded,
)
from .files import write_folder_atomically
from .hypernetwork import LoraFactors


def _brief(values: Sequence[int], shown: int = 6) -> str:
    """A list for a one-line summary: whole when short, else its first and last items and its length."""
    if len(values) <= shown:
        return str(list(values))
    head = ", ".join(str(v) for v in values[: shown - 1])
    return f"[{head}, ..., {values[-1]}] ({len(values)} values)"


@dataclass
class AbsorbedContext:
    """Generated LoRA factors for a batch of contexts.

    Attributes:
        factors: module key "<layer>.<relative name>" -> (A of shape (C, in, r), B of shape (C, r, out)), already
            scaled by sqrt(lora_scale), so that each module computes y = W x + (x A_c) B_c.
        module_paths: module key -> the module's path in the base transformers model (e.g.
            "model.layers.3.self_attn.q_proj"), used for export.
        context_token_counts: tokens of each context that were encoded (memory tokens not counted).
        base_model_name_or_path: the base model the adapter was generated for (written to the exported config).
        base_model_weights: which weights of that base, when its name alone does not say (e.g. peft-shine's embedded
            copy of the default, `defaults.EMBEDDED_WEIGHTS`); written to the exported model card.
        num_chunks: encoder passes (chunks) behind each context's adapter.
        ranks: rank of each context's adapter; `factors` are zero-padded to the largest (padding adds nothing).
        compression_error: relative Frobenius error ||D - D_k|| / ||D|| over all modules when the adapter was
            compressed to a rank budget, else None.
    """

    factors: LoraFactors
    module_paths: dict[str, str]
    context_token_counts: list[int]
    base_model_name_or_path: str | None = None
    base_model_weights: str | None = None
    num_chunks: list[int] | None = None
    ranks: list[int] | None = None
    compression_error: float | None = None

    def __post_init__(self) -> None:
        self.num_chunks = self.num_chunks or [1] * len(self)
        self.ranks = self.ranks or [self.rank] * len(self)

    @classmethod
    def from_parts(cls, contexts: list[dict[str, Factors]], **fields) -> AbsorbedContext:
        """Build from per-context factors {key: (A (in, r_c), B (r_c, out))} of possibly different ranks."""
        keys = contexts[0].keys()
        factors = {key: stack_padded([context[key] for context in contexts]) for key in keys}
        ranks = [next(iter(context.values()))[0].shape[-1] for context in contexts]
        return cls(factors=factors, ranks=ranks, **fields)

    @classmethod
    def from_chunks(
        cls, factors: LoraFactors, chunk_counts: list[int], combination: str = "mean", **fields
    ) -> AbsorbedContext:
        """One adapter per document from the factors of all chunks, A (N, in, r), B (N, r, out), document-major with
        `chunk_counts[d]` chunks for document d (N = sum): each document's chunks are concatenated along the rank
        axis, so its delta is the mean (`combination="mean"`) or the sum ("sum") of its chunk deltas."""
        contexts, start = [], 0
        for count in chunk_counts:
            rows = range(start, start + count)
            weights = combination_weights([1] * count, combination)
            contexts.append(
                {key: concat_along_rank([(a[i], b[i]) for i in rows], weights) for key, (a, b) in factors.items()}
            )
            start += count
        return cls.from_parts(contexts, num_chunks=list(chunk_counts), **fields)

    @classmethod
    def compose(
        cls, parts: Sequence[AbsorbedContext], weights: Sequence[float] | None = None, combination: str = "mean"
    ) -> AbsorbedContext:
        """One adapter holding every context of `parts` (in order): the weighted sum sum_d w_d D_d with `weights`
        (one per context), else the mean (`combination="mean"`) or the sum ("sum") of the context deltas."""
        contexts = [part.context_factors(i) for part in parts for i in range(len(part))]
        check_weight_count(weights, len(contexts))
        if weights is None:
            weights = combination_weights([1] * len(contexts), combination)
        return cls.from_parts(
            [{key: concat_along_rank([c[key] for c in contexts], weights) for key in contexts[0]}],
            module_paths=parts[0].module_paths,
            context_token_counts=[sum(sum(part.context_token_counts) for part in parts)],
            base_model_name_or_path=parts[0].base_model_name_or_path,
            base_model_weights=parts[0].base_model_weights,
            num_chunks=[sum(sum(part.num_chunks) for part in parts)],
        )

    @classmethod
    def extended(
        cls, previous: AbsorbedContext | None, new: AbsorbedContext, combination: str = "mean"
    ) -> AbsorbedContext:
        """`previous` (one context) with the `new` context added without re-encoding anything: the mean over all
        chunks, old and new (`combination="mean"`: each side weighted by its share of the chunks), or the sum."""
        if previous is None or len(previous) != 1 or len(new) != 1:
            raise ValueError(
                "append=True adds one text to one absorbed adapter: absorb a single context first, and append "
                "a single text (or several with compose=True)."
            )
        shares = combination_weights([previous.num_chunks[0], new.num_chunks[0]], combination)
        return cls.compose([previous, new], shares, combination)

    def __len__(self) -> int:
        return len(self.context_token_counts)

    def __repr__(self) -> str:
        """One line, no tensors: contexts, rank(s), tokens and chunks per context, compression, modules, base."""
        a, _ = next(iter(self.factors.values()))
        compressed = "no" if self.compression_error is None else f"relative error {self.compression_error:.3g}"
        return (
            f"AbsorbedContext(contexts={len(self)}, rank={self.rank}, ranks={_brief(self.ranks)}, "
            f"tokens={_brief(self.context_token_counts)}, chunks={_brief(self.num_chunks)}, compressed={compressed}, "
            f"modules={len(self.factors)}, base={self.base_model_name_or_path!r}, dtype={a.dtype}, device={a.device})"
        )

    @property
    def rank(self) -> int:
        """The (largest) rank of the adapters."""
        return next(iter(self.factors.values()))[0].shape[-1]

    def __getitem__(self, index: int) -> AbsorbedContext:
        """The adapter of context `index` alone (at its own rank)."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"Context index {index} is out of range for {len(self)} absorbed contexts.")
        index %= len(self)
        return AbsorbedContext.from_parts(
            [self.context_factors(index)],
            module_paths=self.module_paths,
            context_token_counts=[self.context_token_counts[index]],
            base_model_name_or_path=self.base_model_name_or_path,
            base_model_weights=self.base_model_weights,
            num_chunks=[self.num_chunks[index]],
            compression_error=self.compression_error,
        )

    def select(self, indices: Sequence[int]) -> AbsorbedContext:
        """The adapters of the contexts at `indices`, in that order (repeats allowed), as one batched AbsorbedContext:
        factors A (len(indices), in, R), B (len(indices), R, out) at the same padded rank R."""
        indices = [range(len(self))[i] for i in indices]  # IndexError names an index out of range
        rows = torch.tensor(indices, dtype=torch.long)
        return AbsorbedContext(
            factors={key: (a[rows.to(a.device)], b[rows.to(b.device)]) for key, (a, b) in self.factors.items()},
            module_paths=self.module_paths,
            context_token_counts=[self.context_token_counts[i] for i in indices],
            base_model_name_or_path=self.base_model_name_or_path,
            base_model_weights=self.base_model_weights,
            num_chunks=[self.num_chunks[i] for i in indices],
            ranks=[self.ranks[i] for i in indices],
            compression_error=self.compression_error,
        )

    def check_module_shapes(self, expected: dict[str, tuple[int, int]]) -> None:
        """Raise ValueError unless the factors cover exactly the modules `expected` ({key: (in, out)}) of a model:
        an adapter generated for other target modules or module shapes comes from another base."""
        found = {key: (a.shape[-2], b.shape[-1]) for key, (a, b) in self.factors.items()}
        if found != expected:
            raise ValueError(
                f"This AbsorbedContext was generated for {len(found)} modules (e.g. {next(iter(found.items()))}) "
                f"that do not match this model's {len(expected)} target modules (e.g. "
                f"{next(iter(expected.items()))}, as key: (in, out)): it comes from a model with another "
                f"base or other target_modules. Use it with the model that absorbed it, or absorb the text again."
            )

    def context_factors(self, index: int) -> dict[str, Factors]:
        """Context `index`'s factors without padding: {key: (A (in, r), B (r, out))}."""
        rank = self.ranks[index]
        return {key: (a[index, :, :rank], b[index, :rank]) for key, (a, b) in self.factors.items()}

    def compressed(self, max_rank: int) -> AbsorbedContext:
        """Each context's adapter truncated to rank <= `max_rank` by an SVD of every module's delta, computed on the
        factors; `compression_error` reports the relative Frobenius error over all modules and contexts."""
        contexts, error, norm = [], 0.0, 0.0
        for index in range(len(self)):
            modules = {}
            for key, (a, b) in self.context_factors(index).items():
                a_k, b_k, module_error, module_norm = compress_rank(a, b, max_rank)
                modules[key] = (a_k, b_k)
                error, norm = error + module_error, norm + module_norm
            contexts.append(modules)
        return AbsorbedContext.from_parts(
            contexts,
            module_paths=self.module_paths,
            context_token_counts=self.context_token_counts,
            base_model_name_or_path=self.base_model_name_or_path,
            base_model_weights=self.base_model_weights,
            num_chunks=self.num_chunks,
            compression_error=(error / norm) ** 0.5 if norm > 0 else 0.0,
        )

    def within_rank(self, max_rank: int | None) -> AbsorbedContext:
        """This adapter, or `compressed(max_rank)` when its rank exceeds `max_rank` (None: no budget)."""
        return self if max_rank is None or self.rank <= max_rank else self.compressed(max_rank)

    def delta_weight(self, key: str, index: int = 0) -> torch.Tensor:
        """The dense update of one module for context `index`, in nn.Linear layout: (out, in) = (A B)^T."""
        a, b = self.factors[key]
        return (a[index] @ b[index]).T

    def lora_config(self) -> LoraConfig:
        """The plain PEFT `LoraConfig` equivalent to this adapter: rank r, alpha r (scaling 1), no dropout or bias."""
        return LoraConfig(
            r=self.rank,
            lora_alpha=self.rank,
            lora_dropout=0.0,
            bias="none",
            target_modules=sorted(self.module_paths.values()),
            task_type="CAUSAL_LM",
            base_model_name_or_path=self.base_model_name_or_path,
        )

    def lora_state_dict(self) -> dict[str, torch.Tensor]:
        """PEFT LoRA checkpoint keys (`base_model.model.<path>.lora_A.weight` (r, in), `lora_B.weight` (out, r))."""
        self._require_single("export")
        state = {}
        for key, (a, b) in self.factors.items():
            prefix = f"base_model.model.{self.module_paths[key]}"
            state[f"{prefix}.lora_A.weight"] = a[0].T.contiguous().detach().cpu()
            state[f"{prefix}.lora_B.weight"] = b[0].T.contiguous().detach().cpu()
        return state

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        """Write a standard PEFT LoRA adapter (`adapter_config.json` + `adapter_model.safetensors`).

        `PeftModel.from_pretrained(base, save_directory)` then reproduces the absorbed model's logits, and
        `merge_and_unload()` folds the adapter into the base weights. The files are written to a temporary folder
        and moved into place, so an interrupted save never leaves a half-written adapter; an existing adapter at
        `save_directory` is renamed aside first and deleted only once the new one is in place (restored if the move
        fails).
        """
        self._require_single("save")
        write_folder_atomically(save_directory, self.write_files, prefix=".shine-export-")

    def write_files(self, folder: str | os.PathLike, card: ModelCard | None = None) -> None:
        """The adapter's files into the existing `folder`, as they are (no staging; `save_pretrained` stages): weights,
        config, context summary (`shine_context.json`) and the model card (`card`, default `lora_card`)."""
        folder = os.fspath(folder)
        save_file(self.lora_state_dict(), os.path.join(folder, "adapter_model.safetensors"), {"format": "pt"})
        self.lora_config().save_pretrained(folder)
        _sort_target_modules(os.path.join(folder, "adapter_config.json"))
        with open(os.path.join(folder, "shine_context.json"), "w") as f:
            json.dump(
                {
                    "context_tokens": self.context_token_counts[0],
                    "rank": self.rank,
                    "num_chunks": self.num_chunks[0],
                    "compression_error": self.compression_error,
                },
                f,
            )
        (card or lora_card(self.card_facts())).save(os.path.join(folder, "README.md"))

    def card_facts(self) -> LoraFacts:
        """What the model card of this (single-context) adapter says."""
        self._require_single("describe")
        return LoraFacts(
            rank=self.rank,
            base=self.base_model_name_or_path,
            base_weights=self.base_model_weights,
            context_tokens=self.context_token_counts[0],
            num_chunks=self.num_chunks[0],
            compression_error=self.compression_error,
        )

    def push_to_hub(self, repo_id: str, private: bool | None = None, token: str | None = None, **kwargs) -> str:
        """Upload the exported plain LoRA adapter to the Hub; returns the commit URL."""
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        api.create_repo(repo_id, private=private, exist_ok=True)
        with tempfile.TemporaryDirectory() as folder:
            self.save_pretrained(folder)
            return api.upload_folder(repo_id=repo_id, folder_path=folder, **kwargs)

    def _require_single(self, action: str) -> None:
        if len(self) != 1:
            raise ValueError(
                f"This AbsorbedContext holds {len(self)} contexts; {action} one at a time: `absorbed[i].{action}...`."
            )


def _sort_target_modules(config_path: str) -> None:
    """PEFT stores `target_modules` as a set and writes it in set order, which changes from process to process;
    rewrite it sorted so that the same adapter always gives the same bytes."""
    with open(config_path) as f:
        config = json.load(f)
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
    with open(config_path, "w") as f:
        f.write(json.dumps(config, indent=2, sort_keys=True))
