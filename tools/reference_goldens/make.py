"""Goldens from the SHINE reference code (MuLabPKU/SHINE) for peft-shine's parity tests.

Runs the reference implementation itself, imported from a checkout whose path you give (nothing of it is copied into
peft-shine), on a tiny random Qwen3 built the reference's way, and writes:

    OUTPUT/base/                     config.json + model.safetensors: the tiny base (vocabulary resized for the
                                     reference's three added tokens), loadable by transformers' Qwen3ForCausalLM
    OUTPUT/checkpoint/               mem_tokens.pt, metanetwork.pth, metalora.pth, trainer_state.json, written by the
                                     reference's own `save_checkpoint`
    OUTPUT/checkpoint_ift/           ift_additional_metalora.pth (rank --ift-meta-rank), to be used with the three
                                     files of checkpoint/ (as the reference's instruction tuning saves it)
    OUTPUT/goldens.safetensors       every recorded tensor (see CASES below)
    OUTPUT/goldens.json              configuration, cases, greedy tokens, versions, and the logit margins

Every trainable piece gets non-trivial random values (M2P weights and norms, layer_pe, token_pe, mem_tokens,
meta-LoRA A and B), the checkpoint is written with `save_checkpoint` and read back with `load_checkpoint`, and for each
case the script records the memory states, the M2P output, every generated A and B, the answer logits with the
generated LoRA (and without, to show the LoRA moves them) and greedy tokens.

Environment (a separate venv; the reference forks transformers 4.57's modeling_qwen3.py):

    python3 -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install torch==2.13.0 transformers==4.57.1 omegaconf safetensors
    git clone https://github.com/MuLabPKU/SHINE /tmp/SHINE && git -C /tmp/SHINE checkout 5c3b00b
    TORCHDYNAMO_DISABLE=1 /tmp/refvenv/bin/python tools/reference_goldens/make.py --reference /tmp/SHINE \
        --output tests/fixtures/reference_qwen3_tiny
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")  # the reference decorates Metanetwork.forward with @torch.compile

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

REFERENCE_COMMIT = "5c3b00b"
ADDED_TOKENS = ["<RECON>", "<COMP>", "<NOTHING>"]  # the reference's tokenizer.add_tokens(...) before resizing
MODULES = {"attention": ("q", "k", "v", "o"), "mlp": ("gate", "up", "down")}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", required=True, help="Checkout of MuLabPKU/SHINE (commit 5c3b00b).")
    parser.add_argument("--output", required=True, help="Folder to write the fixture into (replaced).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--num-layers", type=int, default=2)
    parser.add_argument("--num-heads", type=int, default=4, help="Attention heads of the base.")
    parser.add_argument("--num-kv-heads", type=int, default=2)
    parser.add_argument("--intermediate-size", type=int, default=128)
    parser.add_argument("--vocab-size", type=int, default=300, help="Before the three added tokens.")
    parser.add_argument("--lora-rank", type=int, default=2)
    parser.add_argument("--meta-rank", type=int, default=4)
    parser.add_argument("--ift-meta-rank", type=int, default=2, help="Rank of ift_additional_metalora.pth (0: none).")
    parser.add_argument("--m2p-blocks", type=int, default=4)
    parser.add_argument("--m2p-heads", type=int, default=4, help="nhead of the M2P blocks (reference: hidden/128).")
    parser.add_argument("--scale", type=float, default=0.001)
    parser.add_argument("--gain", type=float, default=4.0, help="Std of the last M2P norm's weight (LoRA size).")
    parser.add_argument("--max-new-tokens", type=int, default=8)
    return parser.parse_args()


def reference_cfg(args: argparse.Namespace, num_mem_token: int):
    """The reference's OmegaConf config (as configs/Qwen3-8B.yaml, sized for the tiny base)."""
    from omegaconf import OmegaConf

    encoder = {
        "d_model": args.hidden_size,
        "nhead": args.m2p_heads,
        "dim_feedforward": 2 * args.hidden_size,
        "dropout": 0,
        "activation": "gelu",
        "layer_norm_eps": 1e-5,
        "batch_first": True,
        "norm_first": False,
        "bias": True,
    }
    return OmegaConf.create(
        {
            "hidden_size": args.hidden_size,
            "num_layers": args.num_layers,
            "num_mem_token": num_mem_token,
            "model": {"lora_r": args.lora_rank, "metalora_r": args.meta_rank},
            "optim": {"adapter_reg": 0.0},
            "metanetwork": {
                "type": "transformer",
                "method": "rl",
                "transformer_cfg": {
                    "encoder_cfg": encoder,
                    "couple_encoder_cfg": encoder,
                    "layer_transformer_first": True,
                    "mean_pool_size": 1,
                    "num_layers": args.m2p_blocks,
                    "couple_num_layers": 0,
                    "scale": args.scale,
                },
            },
        }
    )


def build(args: argparse.Namespace):
    """The tiny base and the Metanetwork, built as the reference's training script builds them."""
    from LoraQwen import LoraQwen3ForCausalLM, Qwen3Config
    from metanetwork_family import Metanetwork

    torch.manual_seed(args.seed)
    head_dim = args.hidden_size // args.num_heads
    config = Qwen3Config(
        vocab_size=args.vocab_size,
        hidden_size=args.hidden_size,
        intermediate_size=args.intermediate_size,
        num_hidden_layers=args.num_layers,
        num_attention_heads=args.num_heads,
        num_key_value_heads=args.num_kv_heads,
        head_dim=head_dim,
        max_position_embeddings=512,
        initializer_range=0.2,  # peaked logits: greedy decoding far from ties
        tie_word_embeddings=False,
    )
    config.num_mem_token = -1
    numel = LoraQwen3ForCausalLM(config).lora_params_numel(args.lora_rank)
    assert numel % (args.hidden_size * args.num_layers) == 0, "the reference needs r*D divisible by H"
    config.num_mem_token = numel // (args.hidden_size * args.num_layers)
    cfg = reference_cfg(args, config.num_mem_token)
    metamodel = LoraQwen3ForCausalLM(config)
    metamodel.reset_mem_tokens()
    metamodel.resize_token_embeddings(args.vocab_size + len(ADDED_TOKENS))
    metanetwork = Metanetwork(metamodel, cfg, metamodel.lora_params_numel(args.lora_rank))
    metanetwork.eval()
    for parameter in metamodel.parameters():
        parameter.requires_grad_(False)
    return metanetwork, cfg


@torch.no_grad()
def randomize(metanetwork, metalora: dict, extra: dict | None, args: argparse.Namespace) -> None:
    """Non-trivial values for every trainable piece (the reference starts mem_tokens, PEs and meta-LoRA B at 0)."""
    generator = torch.Generator().manual_seed(args.seed + 1)

    def randn(*shape):
        return torch.randn(*shape, generator=generator)

    m2p = metanetwork.metanetwork
    for name, parameter in m2p.named_parameters():
        if name.endswith("_pe"):
            parameter.copy_(randn(*parameter.shape) * 0.5)
        elif "norm" in name and name.endswith("weight"):
            parameter.copy_(1 + 0.3 * randn(*parameter.shape))
        elif name.endswith("bias"):
            parameter.copy_(0.1 * randn(*parameter.shape))
        else:
            parameter.copy_(randn(*parameter.shape) / parameter.shape[-1] ** 0.5)
    last = m2p.transformer_layers[-1].norm2
    last.weight.copy_(args.gain * randn(*last.weight.shape))
    mem_tokens = metanetwork.metamodel.model.mem_tokens
    mem_tokens.copy_(randn(*mem_tokens.shape) * 0.2)
    for loradict in (metalora, extra or {}):
        for layer in loradict.values():
            for group in layer.values():
                for factors in group.values():
                    factors["A"].copy_(randn(*factors["A"].shape) / factors["A"].shape[1] ** 0.5)
                    factors["B"].copy_(randn(*factors["B"].shape) * 0.5 / factors["B"].shape[1] ** 0.5)


def cases(args: argparse.Namespace) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Context ids and masks: one unpadded context, a batch of two left-padded to the longest (a tokenizer's
    `padding=True`), one left-padded to a fixed length (the reference's collators: `padding="max_length"`)."""
    generator = torch.Generator().manual_seed(args.seed + 2)
    pad = 0

    def text(length):
        return torch.randint(1, args.vocab_size, (length,), generator=generator).tolist()

    def left_pad(rows, length):
        ids = torch.tensor([[pad] * (length - len(r)) + r for r in rows])
        mask = torch.tensor([[0] * (length - len(r)) + [1] * len(r) for r in rows])
        return ids, mask

    single = text(11)
    pair = [text(13), text(6)]
    fixed = text(7)
    return {
        "single": left_pad([single], len(single)),
        "batch": left_pad(pair, max(map(len, pair))),
        "fixed": left_pad([fixed], 20),
    }


@torch.no_grad()
def record(metanetwork, metalora: dict, ids, mask, question, args, prefix: str, tensors: dict, info: dict) -> None:
    """Memory states, M2P output, generated A/B, answer logits (with and without the LoRA) and greedy tokens."""
    metamodel = metanetwork.metamodel
    outputs = metamodel(input_ids=ids, attention_mask=mask, loradict=metalora)
    tensors[f"{prefix}.memory_states"] = outputs.memory_states.contiguous()
    loradict, plain = metanetwork.generate_lora_dict(ids, mask, metalora, return_plain=True)
    tensors[f"{prefix}.m2p_output"] = plain.contiguous()
    for layer, groups in loradict.items():
        for group, names in MODULES.items():
            for name in names:
                for factor in ("A", "B"):
                    tensors[f"{prefix}.lora.{layer}.{group}.{name}.{factor}"] = groups[group][name][factor].contiguous()
    rows = question.expand(ids.shape[0], -1).contiguous()
    logits = metamodel(input_ids=rows, loradict=loradict, ignore_mem_token=True).logits
    base_logits = metamodel(input_ids=rows, ignore_mem_token=True).logits
    tensors[f"{prefix}.answer_logits"] = logits.contiguous()
    tensors[f"{prefix}.base_logits"] = base_logits.contiguous()
    generated = metamodel.generate(
        input_ids=rows,
        attention_mask=torch.ones_like(rows),
        loradict=loradict,
        ignore_mem_token=True,
        max_new_tokens=args.max_new_tokens,
        do_sample=False,
        pad_token_id=0,
        output_scores=True,
        return_dict_in_generate=True,
    )
    top2 = torch.stack([score.topk(2, dim=-1).values for score in generated.scores])  # (steps, B, 2)
    info[prefix] = {
        "context_ids": ids.tolist(),
        "context_attention_mask": mask.tolist(),
        "question_ids": question[0].tolist(),
        "greedy_tokens": generated.sequences[:, rows.shape[1] :].tolist(),
        "smallest_greedy_margin": float((top2[..., 0] - top2[..., 1]).min()),
        "lora_moves_logits_by": float((logits - base_logits).abs().max()),
    }


def save_base(metamodel, folder: str) -> None:
    """The tiny base as a plain Qwen3 (the reference's mem_tokens are the hypernetwork's, not the base's)."""
    os.makedirs(folder)
    state = {k: v.contiguous() for k, v in metamodel.state_dict().items() if not k.endswith("mem_tokens")}
    save_file(state, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
    config = metamodel.config.to_dict()
    config.pop("num_mem_token", None)
    config["architectures"] = ["Qwen3ForCausalLM"]
    with open(os.path.join(folder, "config.json"), "w", encoding="utf-8") as file:
        json.dump(config, file, indent=2, sort_keys=True)


def main() -> None:
    args = parse_args()
    sys.path.insert(0, os.path.abspath(args.reference))
    import transformers
    from utils.myloradict import merge_loradicts
    from utils.mysaveload import load_checkpoint, save_checkpoint

    metanetwork, cfg = build(args)
    metamodel = metanetwork.metamodel
    metalora = metamodel.init_lora_dict(args.meta_rank, scale=args.scale, device="cpu")
    extra = metamodel.init_lora_dict(args.ift_meta_rank, scale=args.scale, device="cpu") if args.ift_meta_rank else None
    randomize(metanetwork, metalora, extra, args)

    if os.path.exists(args.output):
        shutil.rmtree(args.output)
    checkpoint = os.path.join(args.output, "checkpoint")
    state = {"global_step": 0, "note": "random weights for parity tests, not a trained hypernetwork"}
    save_checkpoint(metanetwork, checkpoint, metalora, extra_state=state)
    # Read back with the reference's loader into a freshly built Metanetwork (its own random init is overwritten).
    from metanetwork_family import Metanetwork

    reloaded = Metanetwork(metamodel, cfg, metamodel.lora_params_numel(args.lora_rank)).eval()
    reloaded, metalora, _ = load_checkpoint(reloaded, checkpoint, "cpu")
    save_base(metamodel, os.path.join(args.output, "base"))

    generator = torch.Generator().manual_seed(args.seed + 3)
    question = torch.randint(1, args.vocab_size, (1, 9), generator=generator)
    tensors: dict[str, torch.Tensor] = {}
    info: dict[str, dict] = {}
    for name, (ids, mask) in cases(args).items():
        record(reloaded, metalora, ids, mask, question, args, name, tensors, info)

    if extra is not None:
        # Instruction tuning's extra meta-LoRA: saved beside a copy of the three files, read back with
        # load_ift_additional_metalora=True and merged along the rank as the reference's test script does.
        with tempfile.TemporaryDirectory() as scratch:
            save_checkpoint(metanetwork, scratch, metalora, ift_additional_metalora=extra, extra_state=state)
            reloaded_ift = Metanetwork(metamodel, cfg, metamodel.lora_params_numel(args.lora_rank)).eval()
            reloaded_ift, base_meta, extra_meta = load_checkpoint(
                reloaded_ift, scratch, "cpu", load_ift_additional_metalora=True
            )
            os.makedirs(os.path.join(args.output, "checkpoint_ift"))
            shutil.copy(
                os.path.join(scratch, "ift_additional_metalora.pth"), os.path.join(args.output, "checkpoint_ift")
            )
        merged = merge_loradicts(base_meta, extra_meta, method="rl")
        ids, mask = cases(args)["single"]
        record(reloaded_ift, merged, ids, mask, question, args, "ift_single", tensors, info)

    save_file(tensors, os.path.join(args.output, "goldens.safetensors"))
    commit = subprocess.run(
        ["git", "-C", args.reference, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    meta = {
        "reference": "MuLabPKU/SHINE",
        "reference_commit": commit or f"(not a git checkout; expected {REFERENCE_COMMIT})",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "command": " ".join(["tools/reference_goldens/make.py", *sys.argv[1:]]),
        "options": {k: v for k, v in vars(args).items() if k not in ("reference", "output")},
        "num_mem_token": metamodel.config.num_mem_token,
        "modules": {group: list(names) for group, names in MODULES.items()},
        "cases": info,
    }
    with open(os.path.join(args.output, "goldens.json"), "w", encoding="utf-8") as file:
        json.dump(meta, file, indent=1)
    for name, case in info.items():
        print(
            f"{name}: greedy {case['greedy_tokens']}, smallest margin {case['smallest_greedy_margin']:.3g}, "
            f"LoRA moves logits by up to {case['lora_moves_logits_by']:.3g}"
        )


if __name__ == "__main__":
    main()
