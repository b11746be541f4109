"""Where SHINE acts inside a transformers causal LM: the decoder layers and the linear projections of each layer that
receive a generated LoRA.

Target selection follows PEFT's meaning of the LoRA options (`peft.tuners.tuners_utils.check_target_module_exists`),
applied to full module names of the base model such as `"model.layers.3.mlp.down_proj"`:

- `target_modules`: a `str` is a regular expression that must match the whole module name (`re.fullmatch`); a list
  (or set / tuple) holds exact module names or name suffixes that end at a `.` boundary (`"down_proj"`,
  `"mlp.down_proj"`); `"all-linear"` (any case) or None means every `nn.Linear` inside the decoder layers.
- `exclude_modules`: the same two forms; an excluded module is never targeted.
- `layers_to_transform`: an int or a list of decoder-layer indices; only modules in those layers are targeted (not
  allowed with a regex `target_modules`, as in `LoraConfig`). `layers_pattern` names the `nn.ModuleList` that holds the
  decoder layers (e.g. `"layers"`, `"h"`); it may only be given together with `layers_to_transform`.

SHINE adds one constraint of its own: its hypernetwork writes the same slices (`SlicingPlan`) for every layer it
targets, so every targeted decoder layer must hold the same target modules with the same shapes, and every target
must be an `nn.Linear` inside a decoder layer. `resolve_targets` checks this and returns the `DecoderStructure`.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn
from transformers import PretrainedConfig

ALL_LINEAR = "all-linear"
TargetModules = str | Collection[str] | None
LayerIndices = int | Sequence[int] | None


@dataclass(frozen=True)
class DecoderStructure:
    """Where a causal LM keeps its decoder layers and which linear modules of each targeted layer SHINE adapts."""

    layers_path: str  # e.g. "model.layers"
    layers: nn.ModuleList  # all decoder layers
    module_shapes: dict[str, list[int]]  # relative name -> [in, out], in module order
    layer_indices: tuple[int, ...] | None = None  # targeted decoder layers, ascending; None = all of them

    @property
    def targeted_layers(self) -> tuple[int, ...]:
        """Indices of the decoder layers that receive a generated LoRA (all layers unless restricted)."""
        return tuple(range(len(self.layers))) if self.layer_indices is None else self.layer_indices

    @property
    def restricts_layers(self) -> bool:
        """Whether only some decoder layers are targeted (then the config must record which, see `resolve_targets`)."""
        return self.targeted_layers != tuple(range(len(self.layers)))

    def module_path(self, layer_index: int, relative_name: str) -> str:
        return f"{self.layers_path}.{layer_index}.{relative_name}"

    def target_paths(self) -> dict[str, tuple[int, str]]:
        """Full module name -> (decoder layer index, name relative to the layer) of every targeted module, in layer
        order, then module order (the order of the hypernetwork's slices)."""
        return {self.module_path(i, name): (i, name) for i in self.targeted_layers for name in self.module_shapes}


def find_decoder_layers(
    model: nn.Module, layers_pattern: str | Sequence[str] | None = None
) -> tuple[str, nn.ModuleList]:
    """The `nn.ModuleList` holding the decoder layers: `model.get_decoder().layers` when it has the config's layer
    count, else the first module list of that length (the heuristic for models without `get_decoder`).

    With `layers_pattern` (PEFT's option: `"layers"`, `"h"`, or a list of such names), only a module list whose own
    name (the last component of its path) fully matches one of the patterns qualifies.

    Raises TypeError for a model that is not a transformers model (no `PretrainedConfig`), ValueError when no decoder
    layers are found."""
    check_transformers_model(model)
    num_layers = model.config.get_text_config().num_hidden_layers
    patterns = [layers_pattern] if isinstance(layers_pattern, str) else list(layers_pattern or [])
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    layers = getattr(decoder, "layers", None)
    if not patterns and isinstance(layers, nn.ModuleList) and len(layers) == num_layers:
        return next(name for name, module in model.named_modules() if module is layers), layers
    for name, module in model.named_modules():
        if not (isinstance(module, nn.ModuleList) and len(module) == num_layers and name):
            continue
        if patterns and not any(re.fullmatch(pattern, name.rsplit(".", 1)[-1]) for pattern in patterns):
            continue
        return name, module
    named = f" named by layers_pattern={layers_pattern!r}" if patterns else ""
    raise ValueError(
        f"Could not find the decoder layers of {type(model).__name__}: no nn.ModuleList{named} of length "
        f"num_hidden_layers={num_layers}. SHINE needs a decoder-only transformers model."
    )


def check_transformers_model(model: nn.Module) -> None:
    """Raise TypeError, naming what to use instead, unless `model` is a transformers model (has a `PretrainedConfig`):
    SHINE reads contexts with the model's own decoder layers, so a plain `nn.Module` cannot hold a SHINE adapter."""
    if isinstance(getattr(model, "config", None), PretrainedConfig):
        return
    raise TypeError(
        f"SHINE needs a transformers causal language model with decoder layers (e.g. "
        f"`AutoModelForCausalLM.from_pretrained(...)`), but got {type(model).__name__}, a torch module without a "
        "transformers config: SHINE reads the context with the model's own decoder layers and writes a LoRA for "
        "them. Put SHINE on a transformers causal LM, or use a weight adapter such as peft.LoraConfig for a custom "
        "module."
    )


# ---------------------------------------------------------------------------------------------------------------------
# PEFT's target_modules / exclude_modules / layers_to_transform semantics


def targets_all_linear(target_modules: TargetModules) -> bool:
    """Whether `target_modules` means "every linear layer": None or "all-linear" (any case, as in PEFT)."""
    return target_modules is None or (isinstance(target_modules, str) and target_modules.lower() == ALL_LINEAR)


def matches_module_names(key: str, names: str | Collection[str]) -> bool:
    """PEFT's name matching of `target_modules` / `exclude_modules` on a full module name `key`: a str is a regular
    expression that must match all of `key`; a collection matches a name equal to `key` or a suffix of `key` that
    starts after a `.` (`"down_proj"` and `"mlp.down_proj"` match `"model.layers.0.mlp.down_proj"`, `"proj"` does
    not)."""
    if isinstance(names, str):
        return re.fullmatch(names, key) is not None
    return key in names or any(key.endswith(f".{name}") for name in names)


def normalize_layers_to_transform(layers_to_transform: LayerIndices, num_layers: int) -> tuple[int, ...] | None:
    """`layers_to_transform` as sorted unique decoder-layer indices, None when it does not restrict (None or []).

    Raises ValueError for an index outside `range(num_layers)` (PEFT would silently match nothing)."""
    if layers_to_transform is None:
        return None
    indices = [layers_to_transform] if isinstance(layers_to_transform, int) else list(layers_to_transform)
    if not indices:
        return None
    wrong = [i for i in indices if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < num_layers]
    if wrong:
        raise ValueError(
            f"layers_to_transform={layers_to_transform!r} holds {wrong}, which are not decoder-layer indices of this "
            f"model (0 .. {num_layers - 1})."
        )
    return tuple(sorted(set(indices)))


def check_target_options(
    target_modules: TargetModules,
    layers_to_transform: LayerIndices = None,
    layers_pattern: str | Sequence[str] | None = None,
) -> None:
    """The combinations `LoraConfig` refuses, refused the same way (call it from `ShineConfig.__post_init__`):
    `layers_to_transform` or `layers_pattern` with a regex `target_modules`, and `layers_pattern` without
    `layers_to_transform`."""
    regex = isinstance(target_modules, str) and not targets_all_linear(target_modules)
    if regex and layers_to_transform is not None:
        raise ValueError(
            "`layers_to_transform` cannot be used when `target_modules` is a str (a regular expression): select the "
            "layers in the expression, or pass target_modules as a list of names."
        )
    if regex and layers_pattern is not None:
        raise ValueError("`layers_pattern` cannot be used when `target_modules` is a str.")
    if layers_pattern and layers_to_transform is None:
        raise ValueError("When `layers_pattern` is specified, `layers_to_transform` must also be specified.")


def _linear_shape(module: nn.Module) -> list[int] | None:
    """[in, out] of an `nn.Linear` (or of a PEFT tuner layer wrapping one), else None."""
    if isinstance(module, BaseTunerLayer):
        module = module.get_base_layer()
    if isinstance(module, nn.Linear):
        return [module.in_features, module.out_features]
    return None


def _listed(names: list[str], limit: int = 4) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def resolve_targets(
    model: nn.Module,
    target_modules: TargetModules = None,
    exclude_modules: str | Collection[str] | None = None,
    layers_to_transform: LayerIndices = None,
    layers_pattern: str | Sequence[str] | None = None,
) -> DecoderStructure:
    """The modules SHINE adapts in `model` (a transformers causal LM, before or after injection), selected with PEFT's
    meaning of the options (see the module docstring), and checked against what the hypernetwork can generate.

    A decoder layer is targeted when at least one of its modules is selected; the result lists the targeted layers
    (`layer_indices`, None when all are) and the targets of one layer (`module_shapes`, in module order), so a regex
    or exclusion that selects only some layers restricts the layers just as `layers_to_transform` does.

    Raises ValueError (before anything is modified) when:
    - a pattern or name matches a module outside the decoder layers or one that is not an `nn.Linear`;
    - nothing is selected (naming `exclude_modules` / `layers_to_transform` when they removed everything);
    - targeted layers differ in their target modules or shapes (the hypernetwork slices every layer the same way);
    - the options are combined in a way `LoraConfig` refuses (`check_target_options`), or `layers_to_transform`
      holds an index that is not a decoder layer.
    Warns when `exclude_modules` excludes nothing, as PEFT does.
    """
    check_target_options(target_modules, layers_to_transform, layers_pattern)
    layers_path, layers = find_decoder_layers(model, layers_pattern)
    wanted_layers = normalize_layers_to_transform(layers_to_transform, len(layers))
    all_linear = targets_all_linear(target_modules)
    prefix = f"{layers_path}."

    per_layer: dict[int, dict[str, list[int]]] = {}
    excluded, outside, not_linear = [], [], []
    inside_tuner_layers: list[str] = []
    for name, module in model.named_modules():
        if not name or any(name.startswith(f"{tuner}.") for tuner in inside_tuner_layers):
            continue  # the internals of an injected adapter layer (its base_layer, meta-LoRA) are never targets
        if isinstance(module, BaseTunerLayer):
            inside_tuner_layers.append(name)
        index, relative = None, ""
        if name.startswith(prefix):
            head, _, relative = name[len(prefix) :].partition(".")
            index = int(head) if head.isdigit() and relative else None
        if exclude_modules and matches_module_names(name, exclude_modules):
            excluded.append(name)  # checked first, for every module, as in PEFT
            continue
        shape = _linear_shape(module)
        if all_linear:
            selected = index is not None and shape is not None
        else:
            selected = matches_module_names(name, target_modules)
        if not selected:
            continue
        if index is None:
            outside.append(name)
            continue
        if shape is None:
            not_linear.append(f"{name} ({type(module).__name__})")
            continue
        if wanted_layers is not None and index not in wanted_layers:
            continue
        per_layer.setdefault(index, {})[relative] = shape

    if outside:
        raise ValueError(
            f"target_modules={target_modules!r} matches {_listed(outside)} outside the decoder layers at "
            f"{layers_path!r}; SHINE generates LoRAs only for linear modules inside the decoder layers. Narrow "
            "target_modules or exclude these with exclude_modules."
        )
    if not_linear:
        raise ValueError(
            f"target_modules={target_modules!r} matches {_listed(not_linear)}, which are not nn.Linear; SHINE adapts "
            "linear projections only (name them, e.g. 'q_proj' or r'.*\\.mlp\\.down_proj')."
        )
    if not per_layer:
        what = f"target_modules={target_modules!r}"
        if excluded:
            what += f" with exclude_modules={exclude_modules!r} (which excluded {_listed(excluded)})"
        if wanted_layers is not None:
            what += f" in layers_to_transform={layers_to_transform!r}"
        raise ValueError(f"{what} selects no linear module inside the decoder layers at {layers_path!r}.")
    targeted = tuple(sorted(per_layer))
    reference = per_layer[targeted[0]]
    for index in targeted[1:]:
        if list(per_layer[index].items()) != list(reference.items()):
            raise ValueError(
                "SHINE needs the same target modules with the same shapes in every targeted decoder layer (its "
                f"hypernetwork slices every layer the same way), but layer {targeted[0]} has {reference} and layer "
                f"{index} has {per_layer[index]} (as relative name: [in, out]). Adjust target_modules / "
                "exclude_modules, or choose the layers with layers_to_transform."
            )
    if exclude_modules and not excluded:
        warnings.warn(
            f"You have passed exclude_modules={exclude_modules!r} but no modules were excluded. Please check that "
            "exclude_modules was set correctly.",
            stacklevel=2,
        )
    all_layers = targeted == tuple(range(len(layers)))
    return DecoderStructure(layers_path, layers, dict(reference), None if all_layers else targeted)
