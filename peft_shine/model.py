"""`ShineModel`: the PEFT tuner that injects `ShineLinear` layers, owns the hypernetwork, and turns contexts into
generated LoRAs (absorb / forget / ask, and the training forward with `context_input_ids`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from peft.tuners.tuners_utils import BaseTuner
from torch import nn
from transformers import AutoTokenizer, PreTrainedTokenizerBase
from transformers.modeling_outputs import CausalLMOutputWithPast

from .absorbed import AbsorbedContext
from .composition import check_weight_count
from .config import ChunkCombination, ContextOverflow, ShineConfig, check_choice
from .distillation import answer_token_kl
from .generation import generate_answers, padded_on_device
from .hypernetwork import LoraFactors, ShineHypernetwork, SlicingPlan, context_variance_share, module_key
from .layer import ShineLinear, ShineRuntime, ShineState
from .structure import DecoderStructure, discover_structure, with_state_replay
from .tokenization import (
    as_text_list,
    encode_plain,
    fit_context_lengths,
    split_into_chunks,
)

ContextInput = str | Sequence[str]


class ShineModel(BaseTuner):
    """SHINE tuner: a hypernetwork that reads a context with the frozen base and writes a LoRA for it.

    Use through PEFT: `model = get_peft_model(base, ShineConfig(...))`; then `model.absorb_context(text)`,
    `model.ask(question)`, `model.forget()`, or train with `model(input_ids, attention_mask, labels,
    context_input_ids, context_attention_mask)`.
    """

    prefix = "shine_"
    tuner_layer_cls = ShineLinear
    target_module_mapping: dict[str, list[str]] = {}
    uses_shared_state = True

    # ----------------------------------------------------------------------------------------------------------------
    # Injection

    def inject_adapter(self, model: nn.Module, adapter_name: str, **kwargs: Any) -> None:
        if getattr(self, "shine_hypernetwork", None) is not None and len(self.shine_hypernetwork):
            raise ValueError("A model holds one SHINE adapter; load another SHINE adapter onto a fresh base model.")
        config: ShineConfig = self.peft_config[adapter_name]
        structure = discover_structure(model, config.target_modules)
        self._record_or_check_base(model, config, structure)
        config.resolve_sizes()
        self.runtime = ShineRuntime()
        self.current_context: AbsorbedContext | None = None
        self._tokenizer: PreTrainedTokenizerBase | None = None
        self.skipped_batches = {"no_answer_tokens": 0, "non_finite_loss": 0}
        self.train_encoder = True  # False: the context encode pass runs without gradients (see generate_lora)
        self._structure = structure
        self._target_keys = {
            structure.module_path(i, name): module_key(i, name)
            for i in range(len(structure.layers))
            for name in structure.module_shapes
        }
        self._key_shapes = {
            module_key(i, name): tuple(shape)
            for i in range(len(structure.layers))
            for name, shape in structure.module_shapes.items()
        }
        super().inject_adapter(model, adapter_name, **kwargs)
        self.shine_hypernetwork = nn.ModuleDict({adapter_name: self._build_hypernetwork(model, config)})
        if config.inference_mode:
            for name, param in self.named_parameters():
                if self.prefix in name:
                    param.requires_grad_(False)

    @staticmethod
    def _record_or_check_base(model: nn.Module, config: ShineConfig, structure: DecoderStructure) -> None:
        text_config = model.config.get_text_config()
        found = {
            "base_model_type": text_config.model_type,
            "base_hidden_size": text_config.hidden_size,
            "base_num_layers": len(structure.layers),
            "target_module_shapes": [[name, i, o] for name, (i, o) in structure.module_shapes.items()],
        }
        recorded = {name: getattr(config, name) for name in found}
        if all(value is None for value in recorded.values()):
            for name, value in found.items():
                setattr(config, name, value)
            config.target_modules = list(structure.module_shapes)
            return
        if recorded != found:
            described = {k: v for k, v in recorded.items() if k != "target_module_shapes"}
            actual = {k: v for k, v in found.items() if k != "target_module_shapes"}
            raise ValueError(
                f"This SHINE adapter was built for a base with {described} and target modules "
                f"{recorded['target_module_shapes']}, but the model it is loaded onto "
                f"({getattr(model, 'name_or_path', '') or type(model).__name__}) has {actual} and target modules "
                f"{found['target_module_shapes']}. Load it onto the base it was trained for "
                f"({config.base_model_name_or_path or 'see adapter_config.json'})."
            )

    def _build_hypernetwork(self, model: nn.Module, config: ShineConfig) -> ShineHypernetwork:
        embeddings = model.get_input_embeddings().weight
        plan = SlicingPlan(
            module_shapes=tuple((name, i, o) for name, i, o in config.target_module_shapes),
            rank=config.lora_rank,
            num_layers=config.base_num_layers,
        )
        hypernetwork = ShineHypernetwork(
            plan,
            hidden_size=config.base_hidden_size,
            num_slots=config.num_memory_tokens,
            width=config.m2p_hidden_size,
            num_heads=config.m2p_num_heads,
            intermediate_size=config.m2p_intermediate_size,
            num_blocks=config.m2p_layers,
            lora_scale=config.lora_scale,
            stats_momentum=config.memory_stats_momentum,
            embedding_std=embeddings.detach().float().std().item(),
        )
        return hypernetwork.to(embeddings.device)

    def _check_target_module_exists(self, peft_config: ShineConfig, key: str) -> bool:
        return key in self._target_keys

    def _create_and_replace(self, peft_config, adapter_name, target, target_name, parent, current_key, **kwargs):
        new_module = ShineLinear(
            target, adapter_name, peft_config.meta_lora_rank, self.runtime, self._target_keys[current_key]
        )
        self._replace_module(parent, target_name, new_module, target)

    def _mark_only_adapters_as_trainable(self, model: nn.Module) -> None:
        for name, param in model.named_parameters():
            param.requires_grad = self.prefix in name

    @classmethod
    def _remove_adapter_name_from_key(cls, key: str, adapter_name: str) -> str:
        hypernetwork_prefix = f"shine_hypernetwork.{adapter_name}."
        if hypernetwork_prefix in key:
            return key.replace(hypernetwork_prefix, "shine_hypernetwork.", 1)
        return super()._remove_adapter_name_from_key(key, adapter_name)

    @property
    def hypernetwork(self) -> ShineHypernetwork:
        return self.shine_hypernetwork[self.active_adapters[0]]

    @property
    def shine_config(self) -> ShineConfig:
        return self.peft_config[self.active_adapters[0]]

    # ----------------------------------------------------------------------------------------------------------------
    # Context -> LoRA

    def generate_lora(
        self, context_input_ids: torch.Tensor, context_attention_mask: torch.Tensor, update_statistics: bool = False
    ) -> LoraFactors:
        """Encode left-padded contexts (B, T) with their memory tokens and map the memory states to LoRA factors:
        `encode_memory_states` -> (B, L, M, H) -> hypernetwork -> A (B, in, r), B (B, r, out).

        While `train_encoder` is False (a warm start that trains the M2P alone), the encode pass runs without
        gradients: no backward through the base model for the context, and the meta-LoRA and memory embeddings get
        no gradient."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.train_encoder):
            states = self.encode_memory_states(context_input_ids, context_attention_mask)
        return self.hypernetwork(states, update_statistics=update_statistics)

    def encode_memory_states(
        self, context_input_ids: torch.Tensor, context_attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """Left-padded contexts (B, T) + M memory tokens -> memory states (B, L, M, H).

        One pass of the frozen base with the meta-LoRA on; forward hooks take each decoder layer's output at the M
        memory positions (before the final norm)."""
        hypernetwork = self.hypernetwork
        num_slots = hypernetwork.num_slots
        batch = context_input_ids.shape[0]
        context_embeds = self.model.get_input_embeddings()(context_input_ids)
        memory = hypernetwork.memory_embeddings.to(context_embeds.dtype).expand(batch, -1, -1)
        inputs_embeds = torch.cat([context_embeds, memory], dim=1)
        memory_mask = context_attention_mask.new_ones(batch, num_slots)
        attention_mask = torch.cat([context_attention_mask, memory_mask], dim=1)
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)

        memory_states: list[torch.Tensor] = []

        def collect(module, inputs, output):
            hidden = output[0] if isinstance(output, tuple) else output
            memory_states.append(hidden[:, -num_slots:])

        self._install_checkpoint_replay()
        hooks = [layer.register_forward_hook(collect) for layer in self._structure.layers]
        try:
            with self.runtime.using(ShineState("encode")):
                self.model.base_model(
                    inputs_embeds=inputs_embeds,
                    attention_mask=attention_mask,
                    position_ids=position_ids,
                    use_cache=False,
                )
        finally:
            for hook in hooks:
                hook.remove()
        return torch.stack(memory_states, dim=1)

    def _install_checkpoint_replay(self) -> None:
        """Make activation checkpointing of the decoder layers replay under the state each layer first ran with."""
        for layer in self._structure.layers:
            func = getattr(layer, "_gradient_checkpointing_func", None)
            if getattr(layer, "gradient_checkpointing", False) and not getattr(func, "shine_replays_state", False):
                layer._gradient_checkpointing_func = with_state_replay(func, self.runtime)

    def forward(
        self,
        *args: Any,
        context_input_ids: torch.Tensor | None = None,
        context_attention_mask: torch.Tensor | None = None,
        teacher_input_ids: torch.Tensor | None = None,
        teacher_attention_mask: torch.Tensor | None = None,
        teacher_labels: torch.Tensor | None = None,
        distill_weight: float = 1.0,
        **kwargs: Any,
    ):
        """The base model's forward; with `context_input_ids` (B_ctx, T) the contexts are encoded first (with
        gradients when training) and row i of the batch answers with the LoRA of context i // (rows / B_ctx).

        With `teacher_input_ids` (B, L_t) (the chat with the context in the prompt, see `InstructDataset(...,
        teacher=True)`) and `teacher_labels` (B, L_t), the plain base reads them without gradients and the loss
        becomes `distill_weight * answer_token_kl(...) + (1 - distill_weight) * cross-entropy` on `labels` (B, L)."""
        labels = kwargs.get("labels")
        if self.training and labels is not None and not (labels[..., 1:] != -100).any():
            return self._skip_batch("no_answer_tokens")
        if teacher_input_ids is not None:
            if labels is None or teacher_labels is None:
                raise ValueError("Distillation (teacher_input_ids) needs both `labels` and `teacher_labels`.")
            teacher_logits = self._teacher_logits(teacher_input_ids, teacher_attention_mask)
        if context_input_ids is None:
            self._install_checkpoint_replay()
            output = self.model(*args, **kwargs)
        else:
            if context_attention_mask is None:
                context_attention_mask = torch.ones_like(context_input_ids)
            factors = self.generate_lora(context_input_ids, context_attention_mask, update_statistics=self.training)
            with self.runtime.using(ShineState("answer", factors)):
                output = self.model(*args, **kwargs)
        if teacher_input_ids is not None:
            kl = answer_token_kl(
                output.logits, labels, teacher_logits, teacher_labels, kwargs.get("num_items_in_batch")
            )
            output.loss = distill_weight * kl + (1.0 - distill_weight) * output.loss
        if self.training and getattr(output, "loss", None) is not None and not torch.isfinite(output.loss):
            return self._skip_batch("non_finite_loss")
        return output

    @torch.no_grad()
    def _teacher_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """(B, L_t, V) logits of the plain base model (no generated LoRA, no meta-LoRA) on (B, L_t) teacher ids."""
        with self.runtime.using(ShineState()):
            return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits

    def _skip_batch(self, reason: str) -> CausalLMOutputWithPast:
        """A zero loss that still reaches every trainable tensor (zero gradients, so data-parallel ranks stay in
        step); counted in `skipped_batches` and logged by `ShineTrainingCallback`."""
        self.skipped_batches[reason] += 1
        trainable = [param for param in self.parameters() if param.requires_grad]
        return CausalLMOutputWithPast(loss=sum(param.sum() for param in trainable) * 0.0)

    # ----------------------------------------------------------------------------------------------------------------
    # Absorb / forget / ask

    def resolve_tokenizer(self, tokenizer: PreTrainedTokenizerBase | None = None) -> PreTrainedTokenizerBase:
        """The tokenizer to use: the one given (remembered, and saved with `save_pretrained`), else one remembered,
        else one saved with the adapter, else the base model's (`name_or_path`)."""
        if tokenizer is not None:
            self._tokenizer = tokenizer
            self.shine_config._tokenizer = tokenizer
            return tokenizer
        if self._tokenizer is not None:
            return self._tokenizer
        tried = []
        for source in (getattr(self.shine_config, "_adapter_source", None), getattr(self.model, "name_or_path", None)):
            if not source:
                continue
            try:
                return self.resolve_tokenizer(AutoTokenizer.from_pretrained(source))
            except (OSError, ValueError, TypeError, KeyError) as error:
                tried.append(f"{source!r} ({type(error).__name__})")
        raise ValueError(
            "No tokenizer found for this SHINE model (tried: "
            f"{', '.join(tried) or 'no adapter source and no base name_or_path'}). Pass one: "
            "`model.absorb_context(text, tokenizer=AutoTokenizer.from_pretrained(<base model>))`."
        )

    def context_chunks(
        self,
        context: ContextInput,
        tokenizer: PreTrainedTokenizerBase | None = None,
        context_overflow: ContextOverflow | None = None,
    ) -> list[list[list[int]]]:
        """Plain-text token ids of each context's chunks: one chunk per context, except that under the "chunk"
        policy a context longer than `max_context_tokens` is split on sentence/line boundaries (see
        `tokenization.split_into_chunks`); "truncate" and "error" apply as in `fit_context_lengths`. The policy is
        `context_overflow`, default the config's."""
        texts = as_text_list(context)
        tokenizer = self.resolve_tokenizer(tokenizer)
        config = self.shine_config
        overflow = context_overflow or config.context_overflow
        check_choice("context_overflow", overflow)
        token_ids = encode_plain(tokenizer, texts)
        if overflow != "chunk":
            fitted = fit_context_lengths(token_ids, config.max_context_tokens, overflow)
            return [[ids] for ids in fitted]
        return [
            split_into_chunks(tokenizer, text, config.max_context_tokens, config.chunk_overlap_tokens)
            if len(ids) > config.max_context_tokens
            else [ids]
            for text, ids in zip(texts, token_ids, strict=True)
        ]

    def tokenize_contexts(
        self, context: ContextInput, tokenizer: PreTrainedTokenizerBase | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Texts -> left-padded (N, T) ids and mask of every chunk on the model's device (N = number of contexts
        unless some are chunked)."""
        chunks = [chunk for document in self.context_chunks(context, tokenizer) for chunk in document]
        return padded_on_device(chunks, self.resolve_tokenizer(tokenizer), self.model)

    def _generate_in_batches(self, ids: torch.Tensor, mask: torch.Tensor) -> LoraFactors:
        """`generate_lora` over (N, T) chunks, `chunk_batch_size` at a time -> A (N, in, r), B (N, r, out)."""
        step = self.shine_config.chunk_batch_size
        batches = [self.generate_lora(ids[i : i + step], mask[i : i + step]) for i in range(0, ids.shape[0], step)]
        factors = {
            key: (torch.cat([f[key][0] for f in batches]), torch.cat([f[key][1] for f in batches]))
            for key in batches[0]
        }
        for key, (a, b) in factors.items():
            if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
                raise FloatingPointError(
                    f"The generated LoRA of module {key} (A {tuple(a.shape)}, B {tuple(b.shape)}) is not finite: "
                    f"{self._non_finite_cause()}. The current context is unchanged."
                )
        return factors

    def _non_finite_cause(self) -> str:
        """Why generated factors are not finite: the hypernetwork tensors that are not, else an overflow in the base."""
        tensors = [*self.hypernetwork.named_parameters(), *self.hypernetwork.named_buffers()]
        broken = [name for name, tensor in tensors if tensor.is_floating_point() and not tensor.isfinite().all()]
        if broken:
            return (
                f"the hypernetwork tensors {broken} hold NaN/Inf (damaged adapter weights or a diverged training run); "
                "reload a good checkpoint"
            )
        return (
            "every hypernetwork tensor is finite, so the base model's hidden states overflowed; load the base in "
            "bfloat16 or float32 (float16 overflows easily)"
        )

    @torch.no_grad()
    def absorb_context(
        self,
        context: ContextInput,
        tokenizer: PreTrainedTokenizerBase | None = None,
        *,
        compose: bool = False,
        weights: Sequence[float] | None = None,
        append: bool = False,
        max_lora_rank: int | None | str = "config",
        chunk_combination: ChunkCombination | None = None,
        context_overflow: ContextOverflow | None = None,
    ) -> AbsorbedContext:
        """Read one context (str) or a batch (list of str) and switch the model to the generated LoRA(s):
        chunks -> encode -> combine -> use.

        - Default: one adapter per context; row i of the next forward/generate uses context i (several rows per
          context: context-major). Replaces any context absorbed before.
        - A context longer than `max_context_tokens` is chunked (`context_overflow="chunk"`): every chunk is encoded,
          and the chunk LoRAs are concatenated along the rank axis, so the context's delta is the mean or the sum of
          the chunk deltas (`chunk_combination`).
        - `compose=True`: one adapter holding all contexts (same mechanism): the mean or sum of their deltas, or
          with `weights` the weighted sum sum_d w_d D_d.
        - `append=True`: add this text's chunks to the current (single) adapter without re-encoding it; under "mean"
          the result is the mean over all chunks, old and new (the old delta is rescaled).
        - With `max_lora_rank` an int, a larger adapter is compressed to that rank (truncated SVD per module); None
          keeps the full rank.

        `max_lora_rank`, `chunk_combination` and `context_overflow` default to the `ShineConfig` fields of the same
        names ("config" / None). Returns the `AbsorbedContext` (exportable as a plain PEFT LoRA).
        """
        config = self.shine_config
        combination = chunk_combination or config.chunk_combination
        check_choice("chunk_combination", combination)
        max_rank = config.max_lora_rank if max_lora_rank == "config" else max_lora_rank
        if weights is not None and not compose:
            raise ValueError("weights= mixes several contexts into one adapter; pass compose=True as well.")
        documents = self.context_chunks(context, tokenizer, context_overflow)
        check_weight_count(weights, len(documents))
        chunks = [chunk for document in documents for chunk in document]
        ids, mask = padded_on_device(chunks, self.resolve_tokenizer(tokenizer), self.model)
        absorbed = AbsorbedContext.from_chunks(
            self._generate_in_batches(ids, mask),
            [len(document) for document in documents],
            combination,
            module_paths={key: path for path, key in self._target_keys.items()},
            context_token_counts=[sum(map(len, document)) for document in documents],
            base_model_name_or_path=getattr(self.model, "name_or_path", None) or None,
        )
        if compose:
            absorbed = AbsorbedContext.compose([absorbed], weights, combination)
        if append:
            absorbed = AbsorbedContext.extended(self.current_context, absorbed, combination)
        if max_rank is not None and absorbed.rank > max_rank:
            absorbed = absorbed.compressed(max_rank)
        self.use_context(absorbed)
        return absorbed

    def use_context(self, absorbed: AbsorbedContext | None) -> None:
        """Answer with an `AbsorbedContext` (e.g. one kept from an earlier `absorb_context`); None = base model.
        Raises ValueError for one generated for other target modules or module shapes (another base)."""
        if absorbed is not None:
            found = {key: (a.shape[-2], b.shape[-1]) for key, (a, b) in absorbed.factors.items()}
            if found != self._key_shapes:
                raise ValueError(
                    f"This AbsorbedContext was generated for {len(found)} modules (e.g. {next(iter(found.items()))}) "
                    f"that do not match this model's {len(self._key_shapes)} target modules (e.g. "
                    f"{next(iter(self._key_shapes.items()))}, as key: (in, out)): it comes from a model with another "
                    f"base or other target_modules. Use it with the model that absorbed it, or absorb the text again."
                )
        self.current_context = absorbed
        self.runtime.state = ShineState() if absorbed is None else ShineState("answer", absorbed.factors)

    def forget(self) -> None:
        """Drop the absorbed context: the model computes exactly the base model again. Idempotent."""
        self.use_context(None)

    @contextmanager
    def absorbed(
        self, context: ContextInput, tokenizer: PreTrainedTokenizerBase | None = None, **options: Any
    ) -> Iterator[AbsorbedContext]:
        """`with model.absorbed(text) as ctx:` absorbs for the block (same arguments as `absorb_context`) and restores
        the previous context on exit, also on an exception."""
        previous = self.current_context
        try:
            yield self.absorb_context(context, tokenizer, **options)
        finally:
            self.use_context(previous)

    @torch.no_grad()
    def ask(
        self,
        question: str | Sequence[str],
        max_new_tokens: int = 64,
        tokenizer: PreTrainedTokenizerBase | None = None,
        **generate_kwargs: Any,
    ) -> str | list[str]:
        """Answer a question (or a list, context-major for batched contexts) from the absorbed context, with the
        question alone in the chat template (the training format); greedy unless `generate_kwargs` say otherwise."""
        tokenizer = self.resolve_tokenizer(tokenizer)
        questions = as_text_list(question, what="question")
        answers = generate_answers(self.model, tokenizer, questions, max_new_tokens, **generate_kwargs)
        return answers[0] if isinstance(question, str) else answers

    # ----------------------------------------------------------------------------------------------------------------
    # Diagnostics

    @torch.no_grad()
    def calibrate_memory_statistics(
        self, contexts: Sequence[str], tokenizer: PreTrainedTokenizerBase | None = None, batch_size: int = 8
    ) -> None:
        """Fold the memory states of `contexts` into the running standardisation statistics (training does this
        automatically; call it to give an untrained or newly targeted hypernetwork sensible statistics)."""
        contexts = as_text_list(contexts)
        for start in range(0, len(contexts), batch_size):
            ids, mask = self.tokenize_contexts(list(contexts[start : start + batch_size]), tokenizer)
            self.generate_lora(ids, mask, update_statistics=True)

    @torch.no_grad()
    def context_variance_share(
        self, contexts: Sequence[str], tokenizer: PreTrainedTokenizerBase | None = None
    ) -> dict[str, float]:
        """Across-context variance share of the generated deltas for these contexts (per module key and "all"):
        0 means every context gets the same LoRA. See `hypernetwork.context_variance_share`."""
        if len(as_text_list(contexts)) < 2:
            raise ValueError("context_variance_share compares contexts with each other: pass at least two.")
        ids, mask = self.tokenize_contexts(contexts, tokenizer)
        return context_variance_share(self.generate_lora(ids, mask))
