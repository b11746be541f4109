"""Builders shared by the tests: a small byte-level BPE tokenizer with a ChatML template, trained on
`fixtures/corpus.txt`, tiny random decoder-only models of several architectures, and tiny SHINE models."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    LlamaConfig,
    MistralConfig,
    Phi3Config,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen3Config,
)

FIXTURES = Path(__file__).parent / "fixtures"
CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A 400-token byte-level BPE tokenizer with ChatML special tokens and chat template."""
    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<pad>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train([str(FIXTURES / "corpus.txt")], trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, pad_token="<pad>", eos_token="<|im_end|>", bos_token="<|im_start|>"
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


TINY = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
ARCHITECTURES = {
    "llama": lambda v: LlamaConfig(vocab_size=v, **TINY),
    "qwen2": lambda v: Qwen2Config(vocab_size=v, **TINY),
    "qwen3": lambda v: Qwen3Config(vocab_size=v, head_dim=16, **TINY),
    "mistral": lambda v: MistralConfig(vocab_size=v, **TINY),
    "phi3": lambda v: Phi3Config(vocab_size=v, pad_token_id=0, **TINY),
}


def build_model(architecture: str = "llama", vocab_size: int = 400, seed: int = 0):
    """A tiny random causal LM in float32, eval mode."""
    torch.manual_seed(seed)
    config = ARCHITECTURES[architecture](vocab_size)
    config.tie_word_embeddings = False
    return AutoModelForCausalLM.from_config(config).eval()


SMALL_SHINE = dict(lora_rank=2, meta_lora_rank=4, m2p_layers=2)


def build_shine(architecture: str = "llama", vocab_size: int = 400, seed: int = 0, **overrides):
    """A tiny random base wrapped with `get_peft_model` and a small SHINE config; B of the meta-LoRA is made
    non-zero so that the encode pass differs from the base model (as it does after training)."""
    from peft import get_peft_model

    import peft_shine  # noqa: F401  (registers SHINE)
    from peft_shine import ShineConfig

    base = build_model(architecture, vocab_size, seed)
    model = get_peft_model(base, ShineConfig(**{**SMALL_SHINE, **overrides}))
    torch.manual_seed(seed + 1)
    for name, param in model.named_parameters():
        if "shine_meta_B" in name:
            torch.nn.init.normal_(param, std=0.02)
    return model.eval()


CONTEXTS = [
    "The lighthouse on Marrow Point was built in 1871 by the engineer Clara Vennet.",
    "Mary went to the kitchen. John picked up the apple. Sandra travelled to the garden.",
    "The report was signed by the director, Ingrid Solberg.",
]
