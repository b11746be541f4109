"""`ShineModel`: the PEFT tuner that injects `ShineLinear` layers, owns the hypernetwork, turns contexts into generated
LoRAs (`generate_lora`) and runs the forward with `context_input_ids`; absorb / forget / ask are `contexts.py`."""

from __future__ import annotations

from typing import Any

import torch
from peft.tuners.tuners_utils import BaseTuner, _ExcludedModule
from torch import nn
from transformers import PreTrainedTokenizerBase

from .absorbed import AbsorbedContext
from .building import build_hypernetwork, record_or_check_base
from .cards import base_weights_of
from .checkpointing import install_checkpoint_replay
from .config import ShineConfig
from .contexts import ContextMethods
from .encoding import encode_memory_states
from .guards import learns_from_contexts, missing_contexts_error, reject_loss_inputs
from .hypernetwork import LoraFactors, ShineHypernetwork, module_key
from .layer import ShineLinear, ShineRuntime, ShineState
from .structure import matches_module_names, resolve_targets


class ShineModel(ContextMethods, BaseTuner):
    """SHINE tuner: a hypernetwork that reads a context with the frozen base and writes a LoRA for it.

    Use through PEFT: `model = get_peft_model(base, ShineConfig(...))`; then `model.absorb_context(text)`,
    `model.ask(question)`, `model.forget()` (those are `contexts.ContextMethods`), or train with `model(input_ids,
    attention_mask, labels, context_input_ids, context_attention_mask)`.
    """

    prefix = "shine_"
    tuner_layer_cls = ShineLinear
    target_module_mapping: dict[str, list[str]] = {}

    # ----------------------------------------------------------------------------------------------------------------
    # Injection

    def inject_adapter(self, model: nn.Module, adapter_name: str, **kwargs: Any) -> None:
        if getattr(self, "shine_hypernetwork", None) is not None and len(self.shine_hypernetwork):
            raise ValueError("A model holds one SHINE adapter; load another SHINE adapter onto a fresh base model.")
        config: ShineConfig = self.peft_config[adapter_name]
        structure = resolve_targets(
            model, config.target_modules, config.exclude_modules, config.layers_to_transform, config.layers_pattern
        )
        record_or_check_base(model, config, structure)
        config.base_model_weights = config.base_model_weights or base_weights_of(model)
        config.resolve_sizes()
        self.runtime = ShineRuntime()
        self.current_context: AbsorbedContext | None = None
        self.tokenizer: PreTrainedTokenizerBase | None = None  # see resolve_tokenizer
        self.train_encoder = True  # False: the context encode pass runs without gradients (see generate_lora)
        self._structure = structure
        self._target_keys = {path: module_key(i, name) for path, (i, name) in structure.target_paths().items()}
        self._key_shapes = {
            module_key(i, name): tuple(structure.module_shapes[name]) for i, name in structure.target_paths().values()
        }
        super().inject_adapter(model, adapter_name, **kwargs)
        self.shine_hypernetwork = nn.ModuleDict({adapter_name: build_hypernetwork(model, config)})
        self.shine_hypernetwork[adapter_name].requires_grad_(not config.inference_mode)
        model.add_model_tags(["shine", "peft", "hypernetwork", "peft-shine"])

    def _check_target_module_exists(self, peft_config: ShineConfig, key: str):
        if key in self._target_keys:
            return True
        if peft_config.exclude_modules and matches_module_names(key, peft_config.exclude_modules):
            return _ExcludedModule()  # PEFT counts exclusions (and warns when exclude_modules excluded nothing)
        return False

    def _create_and_replace(self, peft_config, adapter_name, target, target_name, parent, current_key, **kwargs):
        new_module = ShineLinear(
            target,
            adapter_name,
            peft_config.meta_lora_rank,
            self.runtime,
            self._target_keys[current_key],
            init_weights=peft_config.init_weights,
        )
        self._replace_module(parent, target_name, new_module, target)

    def set_adapter(self, adapter_name: str | list[str], inference_mode: bool = False) -> None:
        """PEFT's set_adapter, with the hypernetwork frozen or unfrozen together with the layers' meta-LoRA."""
        super().set_adapter(adapter_name, inference_mode=inference_mode)
        names = [adapter_name] if isinstance(adapter_name, str) else list(adapter_name)
        for name, hypernetwork in getattr(self, "shine_hypernetwork", {}).items():
            hypernetwork.requires_grad_(name in names and not inference_mode)

    def set_requires_grad(self, adapter_names, requires_grad: bool = True) -> None:
        super().set_requires_grad(adapter_names, requires_grad=requires_grad)
        names = {adapter_names} if isinstance(adapter_names, str) else set(adapter_names)
        for name in names & set(self.shine_hypernetwork):
            self.shine_hypernetwork[name].requires_grad_(requires_grad)

    def delete_adapter(self, adapter_name: str) -> None:
        """Remove the adapter's meta-LoRA (PEFT) and its hypernetwork, and drop the absorbed context."""
        super().delete_adapter(adapter_name)
        del self.shine_hypernetwork[adapter_name]
        self.use_context(None)

    @classmethod
    def _remove_adapter_name_from_key(cls, key: str, adapter_name: str) -> str:
        hypernetwork_prefix = f"shine_hypernetwork.{adapter_name}."
        if hypernetwork_prefix in key:
            return key.replace(hypernetwork_prefix, "shine_hypernetwork.", 1)
        return super()._remove_adapter_name_from_key(key, adapter_name)

    def _active_name(self) -> str:
        if not self.active_adapters:
            raise ValueError("This model has no active SHINE adapter (it was deleted); load one with load_adapter.")
        return self.active_adapters[0]

    @property
    def hypernetwork(self) -> ShineHypernetwork:
        return self.shine_hypernetwork[self._active_name()]

    @property
    def shine_config(self) -> ShineConfig:
        return self.peft_config[self._active_name()]

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
        """Left-padded contexts (B, T) + M memory tokens -> memory states (B, L, M, H) (`encoding.py`)."""
        return encode_memory_states(
            self.model,
            [self._structure.layers[i] for i in self._structure.targeted_layers],
            self.runtime,
            self.hypernetwork.memory_embeddings,
            context_input_ids,
            context_attention_mask,
            self.shine_config.context_position_ids,
        )

    def forward(
        self,
        *args: Any,
        context_input_ids: torch.Tensor | None = None,
        context_attention_mask: torch.Tensor | None = None,
        **kwargs: Any,
    ):
        """The base model's forward; with `context_input_ids` (B_ctx, T) the contexts are encoded first (with
        gradients when training) and row i of the batch answers with the LoRA of context i // (rows / B_ctx).

        The training loss policy (distillation, batches without answer tokens) is `objective.ShineLoss`, the
        `compute_loss_func` of the Trainer; with `labels` this forward returns the base model's own loss. A training
        forward (training mode, gradients on) with `labels` and no contexts raises ValueError: nothing would learn."""
        reject_loss_inputs(kwargs)
        if context_input_ids is None:
            if kwargs.get("labels") is not None and learns_from_contexts(self):
                raise missing_contexts_error("this training-mode forward got labels")
            install_checkpoint_replay(self._structure.layers, self.runtime)
            return self.model(*args, **kwargs)
        if context_attention_mask is None:
            context_attention_mask = torch.ones_like(context_input_ids)
        factors = self.generate_lora(context_input_ids, context_attention_mask, update_statistics=self.training)
        with self.runtime.using(ShineState("answer", factors)):
            return self.model(*args, **kwargs)
