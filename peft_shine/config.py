"""`ShineConfig`: the configuration of a SHINE adapter (hypernetwork + meta-LoRA) for a causal LM."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from peft import PeftConfig

from .cards import HypernetworkFacts, add_hypernetwork_section
from .checkpoint import check_adapter_weights
from .structure import check_target_options


class _PeftTypeName(str):
    """ "SHINE" (equal to, hashed and saved as the plain string) whose str() reads "PeftType.SHINE" like a PeftType
    member, which is what `peft.get_model_status` parses, and whose `.value` and `.name` are "SHINE" as a member's."""

    def __str__(self) -> str:
        return f"PeftType.{str.__str__(self)}"

    @property
    def value(self) -> str:
        """The plain name, as `PeftType.LORA.value` ("LORA"): PEFT's error paths read it (`mixed=True`, hotswap)."""
        return str.__str__(self)

    @property
    def name(self) -> str:
        """The plain name, as `PeftType.LORA.name`."""
        return str.__str__(self)


SHINE_PEFT_TYPE = _PeftTypeName("SHINE")
REFERENCE_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""The reference's targets, in its slicing order: attention (q, k, v, o), then MLP (gate, up, down)."""
ContextOverflow = Literal["chunk", "truncate", "error"]
ChunkCombination = Literal["mean", "sum"]
ContextPositionIds = Literal["mask", "arange"]


@dataclass
class ShineConfig(PeftConfig):
    """Configuration of a SHINE hypernetwork that turns a text context into a LoRA adapter in one forward pass.

    Hyperparameters (set by the user):
        lora_rank: rank r of the generated LoRA on every target module.
        meta_lora_rank: rank of the trainable meta-LoRA that is active only while the context is encoded.
        init_weights: True (default) starts the meta-LoRA's B at zero, so that an untrained adapter reads the context
            with the base model itself (as LoRA's `init_lora_weights=True`); False leaves B random (as PEFT's
            `init_weights=False`, used by tests that need a non-identity adapter).
        target_modules: linear projections inside the decoder layers that receive a generated LoRA, with PEFT's
            meaning: a str is a regular expression that must match a module's full name
            (`".*[.]mlp[.]down_proj"`), a list matches exact names or suffixes (`["q_proj", "mlp.down_proj"]`), `None`
            or `"all-linear"` targets every `nn.Linear` of each decoder layer (fused ones such as Phi-3's `qkv_proj`
            included). Every targeted layer must hold the same targets with the same shapes.
        exclude_modules: modules never targeted, matched like `target_modules` (regex str or names / suffixes).
        layers_to_transform: decoder layer index or indices to target; None = every layer. The hypernetwork writes
            the LoRA of layer i from the memory states at layer i, so its layer axis is the targeted layers.
        layers_pattern: name of the `nn.ModuleList` of decoder layers (e.g. "layers"), needed with
            `layers_to_transform` only where the layers are not `model.get_decoder().layers`.
        num_memory_tokens: memory slots M appended to the context; default `ceil(r * D / H)`.
        m2p_layers: number of M2P transformer blocks (even: they alternate layer axis / memory axis).
        m2p_hidden_size, m2p_num_heads, m2p_intermediate_size: M2P width, heads and FFN size; defaults H,
            H / 128 (or the nearest head size that divides the width) and 2 * width.
        lora_scale: s; each generated factor is multiplied by sqrt(s).
        max_context_tokens: longest context (in tokens) encoded in one pass.
        context_overflow: what happens to a longer context when it is absorbed: `"chunk"` (default: split on
            sentence/line boundaries into chunks of at most `max_context_tokens`, encode each, and concatenate the
            chunk LoRAs along the rank axis, see `chunk_combination`), `"truncate"` (keep the first `max_context_tokens`
            tokens, warning how many were dropped) or `"error"`. Training encodes each context in one pass and
            raises for a longer one unless the policy is "truncate".
        chunk_combination: how the chunk deltas of one adapter combine: `"mean"` (default: their average, so a
            long document's delta has the size of one context's) or `"sum"`. The same rule combines documents under
            `absorb_context(..., compose=True)` without weights and the text added with `append=True`. Measured on
            the default model: summed deltas of 3 or more chunks make it answer with empty strings.
        chunk_overlap_tokens: tokens shared by consecutive chunks.
        chunk_batch_size: chunks encoded per forward pass (bounds memory for long documents).
        max_lora_rank: rank budget of an absorbed adapter; a longer document's concatenated adapter is compressed to
            it by a truncated SVD of each module's delta. None keeps the full rank (r per chunk).
        memory_stats_momentum: momentum of the running per-(layer, slot, dim) standardisation of memory states.
        standardize_memory_states: standardise the memory states per (layer, slot, dim) with running statistics
            before the M2P (default True, our addition for bases with massive activations such as SmolLM2). False
            feeds the raw states into the M2P as the reference code does: no statistics are kept or saved.
        context_position_ids: position ids of the context encode pass over left-padded contexts + memory: `"mask"`
            (default: counted from the attention mask, `cumsum - 1`, as transformers does in generation; each context's
            first real token is at position 0) or `"arange"` (0 .. T + M - 1 over the padded length, as the reference
            code does; pad tokens are masked either way). Equal in exact arithmetic under RoPE; float rounding differs
            by ~1e-5, so reproducing the reference bit for bit needs `"arange"`.

    `ShineConfig.reference(...)` builds the configuration of the SHINE paper's released hypernetworks.

    Recorded from the base model when the adapter is created (checked when it is loaded again):
        base_model_type, base_hidden_size, base_num_layers, target_module_shapes ([module name relative to a decoder
        layer, in_features, out_features] per target module, in slicing order; a list because JSON configs are
        saved with sorted keys).
    Recorded, not checked: base_model_weights, which weights of `base_model_name_or_path` the adapter was made on
        when the name alone does not say (peft-shine's embedded copy of the default base).
    """

    lora_rank: int = field(default=8, metadata={"help": "Rank of the generated LoRA."})
    meta_lora_rank: int = field(default=16, metadata={"help": "Rank of the meta-LoRA used while encoding."})
    init_weights: bool = field(default=True, metadata={"help": "Start the meta-LoRA's B at zero (False: random)."})
    target_modules: list[str] | str | None = field(
        default=None, metadata={"help": "Decoder-layer linear modules to adapt; None = all linear projections."}
    )
    exclude_modules: list[str] | str | None = field(
        default=None, metadata={"help": "Modules never adapted: a regex (full match) or names / suffixes."}
    )
    layers_to_transform: list[int] | int | None = field(
        default=None, metadata={"help": "Decoder layers to adapt (index or list); None = all."}
    )
    layers_pattern: list[str] | str | None = field(
        default=None, metadata={"help": "Name of the nn.ModuleList of decoder layers, with layers_to_transform."}
    )
    num_memory_tokens: int | None = field(default=None, metadata={"help": "Memory slots; None = ceil(r*D/H)."})
    m2p_layers: int = field(default=4, metadata={"help": "M2P transformer blocks (even)."})
    m2p_hidden_size: int | None = field(default=None, metadata={"help": "M2P width; None = base hidden size."})
    m2p_num_heads: int | None = field(default=None, metadata={"help": "M2P attention heads."})
    m2p_intermediate_size: int | None = field(default=None, metadata={"help": "M2P FFN size; None = 2*width."})
    lora_scale: float = field(default=1e-3, metadata={"help": "Generated factors are scaled by sqrt(lora_scale)."})
    max_context_tokens: int = field(default=2048, metadata={"help": "Longest context encoded in one pass."})
    context_overflow: ContextOverflow = field(default="chunk", metadata={"help": "'chunk', 'truncate' or 'error'."})
    chunk_combination: ChunkCombination = field(
        default="mean", metadata={"help": "'mean' or 'sum' of the chunk (and composed document) deltas."}
    )
    chunk_overlap_tokens: int = field(default=0, metadata={"help": "Tokens shared by consecutive chunks."})
    chunk_batch_size: int = field(default=8, metadata={"help": "Chunks encoded per forward pass."})
    max_lora_rank: int | None = field(default=None, metadata={"help": "Compress absorbed adapters to this rank."})
    memory_stats_momentum: float = field(default=0.01, metadata={"help": "Running standardisation momentum."})
    standardize_memory_states: bool = field(
        default=True, metadata={"help": "Standardise memory states before the M2P; False = the reference (raw)."}
    )
    context_position_ids: ContextPositionIds = field(
        default="mask", metadata={"help": "Encode-pass position ids: 'mask' (cumsum) or 'arange' (the reference)."}
    )
    base_model_type: str | None = field(default=None, metadata={"help": "Recorded: base model_type."})
    base_hidden_size: int | None = field(default=None, metadata={"help": "Recorded: base hidden size."})
    base_num_layers: int | None = field(default=None, metadata={"help": "Recorded: base decoder layer count."})
    target_module_shapes: list[list[str | int]] | None = field(
        default=None, metadata={"help": "Recorded: [relative module name, in, out] per target, in slicing order."}
    )
    base_model_weights: str | None = field(
        default=None,
        metadata={"help": "Recorded: which weights of the base it was made on, where the name is unclear."},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.peft_type = SHINE_PEFT_TYPE
        if self.task_type is None:
            self.task_type = "CAUSAL_LM"
        if self.task_type != "CAUSAL_LM":
            raise ValueError(f"SHINE adapts causal language models; got task_type={self.task_type!r}, use 'CAUSAL_LM'.")
        for name in ("lora_rank", "meta_lora_rank", "m2p_layers"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"ShineConfig.{name} must be a positive integer, got {getattr(self, name)!r}.")
        if self.m2p_layers % 2:
            raise ValueError(
                f"ShineConfig.m2p_layers must be even (blocks alternate layer and memory axes), got {self.m2p_layers}."
            )
        if self.lora_scale <= 0:
            raise ValueError(f"ShineConfig.lora_scale must be > 0, got {self.lora_scale}.")
        check_choice("context_position_ids", self.context_position_ids, "ShineConfig.")
        check_absorb_values({name: getattr(self, name) for name in ABSORB_FIELDS}, "ShineConfig.")
        if isinstance(self.target_modules, set):
            self.target_modules = sorted(self.target_modules)
        if isinstance(self.exclude_modules, set):
            self.exclude_modules = sorted(self.exclude_modules)
        check_target_options(self.target_modules, self.layers_to_transform, self.layers_pattern)

    @classmethod
    def reference(
        cls, lora_rank: int = 8, meta_lora_rank: int = 128, m2p_layers: int = 4, lora_scale: float = 1e-3, **kwargs
    ) -> ShineConfig:
        """The configuration of the SHINE paper's hypernetworks (MuLabPKU/SHINE, `configs/Qwen3-8B.yaml`, scripts
        `*_8lora_128metalora*`): rank `lora_rank` on all seven projections of every decoder layer, M = r*D/H memory
        slots, meta-LoRA rank `meta_lora_rank`, `m2p_layers` post-LN blocks of width H with H/128 heads and FFN 2H
        (layer axis first), factors scaled by sqrt(`lora_scale`), raw memory states and the reference's position ids.
        `kwargs` set any other field (e.g. `m2p_num_heads` for a base whose width is not a multiple of 128)."""
        kwargs.setdefault("target_modules", list(REFERENCE_TARGET_MODULES))
        return cls(
            lora_rank=lora_rank,
            meta_lora_rank=meta_lora_rank,
            m2p_layers=m2p_layers,
            lora_scale=lora_scale,
            standardize_memory_states=False,
            context_position_ids="arange",
            **kwargs,
        )

    # ----------------------------------------------------------------------------------------------------------------
    # Sizes derived from the recorded base structure.

    @property
    def generated_numbers_per_layer(self) -> int:
        """r * D: numbers of one decoder layer's generated LoRA (D = sum of in + out over target modules)."""
        return self.lora_rank * sum(i + o for _, i, o in self.target_module_shapes)

    def resolve_sizes(self) -> None:
        """Fill `num_memory_tokens` and the M2P sizes from the recorded base structure (idempotent)."""
        hidden = self.base_hidden_size
        needed = math.ceil(self.generated_numbers_per_layer / hidden)
        if self.num_memory_tokens is None:
            self.num_memory_tokens = needed
        elif self.num_memory_tokens < needed:
            raise ValueError(
                f"num_memory_tokens={self.num_memory_tokens} is too small: the memory holds M*H = "
                f"{self.num_memory_tokens * hidden} numbers per layer but r*D = {self.generated_numbers_per_layer} are "
                f"needed. Use at least {needed} or leave it as None."
            )
        if self.m2p_hidden_size is None:
            self.m2p_hidden_size = hidden
        if self.m2p_num_heads is None:
            self.m2p_num_heads = default_num_heads(self.m2p_hidden_size)
        if self.m2p_hidden_size % self.m2p_num_heads:
            raise ValueError(
                f"m2p_hidden_size={self.m2p_hidden_size} is not divisible by m2p_num_heads={self.m2p_num_heads}."
            )
        if self.m2p_intermediate_size is None:
            self.m2p_intermediate_size = 2 * self.m2p_hidden_size

    # ----------------------------------------------------------------------------------------------------------------
    # The two hooks PEFT's PeftModel.save_pretrained / from_pretrained give an adapter type: both delegate.

    def save_pretrained(self, save_directory: str, **kwargs: Any) -> None:
        """PEFT's save, then the SHINE card (`cards.add_hypernetwork_section`): `PeftModel.save_pretrained` calls no
        tuner code, so the config's save is the one place to complete the model card PEFT just wrote."""
        super().save_pretrained(save_directory, **kwargs)
        add_hypernetwork_section(save_directory, HypernetworkFacts.of(self))

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str, subfolder: str | None = None, **kwargs: Any):
        """Load the config of a saved SHINE adapter (local folder or Hub repo) and check its weights file.

        This is the loader `PeftModel.from_pretrained` uses, so a missing, pickled-only (`adapter_model.bin`) or
        truncated `adapter_model.safetensors` fails here with an error that names the file, before PEFT builds the
        model (PEFT itself would fall back to unpickling `adapter_model.bin`). To read only the config of a folder
        without weights, use `PeftConfig.from_pretrained`."""
        config = super().from_pretrained(pretrained_model_name_or_path, subfolder=subfolder, **kwargs)
        # here, because PEFT reads the weights right after the config and would unpickle adapter_model.bin
        check_adapter_weights(str(pretrained_model_name_or_path), subfolder, **cls._split_kwargs(kwargs)[0])
        return config


CHOICES = {
    "context_overflow": get_args(ContextOverflow),
    "chunk_combination": get_args(ChunkCombination),
    "context_position_ids": get_args(ContextPositionIds),
}


def check_choice(name: str, value: str, owner: str = "") -> None:
    """Raise ValueError unless `value` is one of the allowed values of the option `name` (see `CHOICES`)."""
    allowed = CHOICES[name]
    if value not in allowed:
        listed = ", ".join(repr(choice) for choice in allowed[:-1]) + f" or {allowed[-1]!r}"
        raise ValueError(f"{owner}{name} must be {listed}, got {value!r}.")


ABSORB_FIELDS = (
    "max_context_tokens",
    "context_overflow",
    "chunk_overlap_tokens",
    "chunk_combination",
    "chunk_batch_size",
    "max_lora_rank",
)
"""The fields whose saved values are only defaults of each absorb (`options.AbsorbOptions` overrides them per call)."""


def check_absorb_values(values: dict, owner: str = "") -> None:
    """Raise ValueError unless the `ABSORB_FIELDS` values are in range (shared by `ShineConfig` and `AbsorbOptions`)."""
    for name in ("max_context_tokens", "chunk_batch_size"):
        if int(values[name]) < 1:
            raise ValueError(f"{owner}{name} must be a positive integer, got {values[name]!r}.")
    check_choice("context_overflow", values["context_overflow"], owner)
    check_choice("chunk_combination", values["chunk_combination"], owner)
    if not 0 <= values["chunk_overlap_tokens"] < values["max_context_tokens"]:
        raise ValueError(
            f"{owner}chunk_overlap_tokens must be in [0, max_context_tokens), got {values['chunk_overlap_tokens']}."
        )
    if values["max_lora_rank"] is not None and values["max_lora_rank"] < 1:
        raise ValueError(f"{owner}max_lora_rank must be None or >= 1, got {values['max_lora_rank']}.")


def default_num_heads(width: int) -> int:
    """Heads for an M2P of this width: width / 128 as in the reference, else the first head size that divides it."""
    for head_dim in (128, 64, 96, 80, 48, 32, 16, 8):
        if width % head_dim == 0:
            return width // head_dim
    return 1
