"""Builders shared by the tests: a small byte-level BPE tokenizer with a ChatML template, trained on
`fixtures/corpus.txt`, tiny random decoder-only models of several architectures, tiny SHINE models, a stock
`transformers.Trainer` on a handful of QA records, and JSON Lines files."""

from __future__ import annotations

import gzip
import json
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

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


LLAMA_LAYER = [  # the linear modules of a Llama-style decoder layer, in module order
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
]


def build_tokenizer(vocab_size: int = 400) -> PreTrainedTokenizerFast:
    """A `vocab_size`-token byte-level BPE tokenizer with ChatML special tokens and chat template."""
    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
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

QA = [
    {
        "context": "The lighthouse was built in 1871 by Clara Vennet.",
        "question": "Who built it?",
        "answers": ["Clara Vennet"],
    },
    {"context": "Mary went to the kitchen.", "question": "Where is Mary?", "answers": ["kitchen"]},
    {"context": "The river Selden floods in March.", "question": "When does it flood?", "answers": ["March"]},
    {
        "context": "The report was signed by Ingrid Solberg.",
        "question": "Who signed it?",
        "answers": ["Ingrid Solberg"],
    },
]


def train(tokenizer, tmp_path, steps, lr=1e-2, **overrides):
    """A stock `Trainer` (single-QA examples of `QA`, SHINE loss and callback, CPU, seed 0, a loss logged every
    step) and its tiny SHINE model, whose sharpened head lets the adapter matter; `overrides` go to
    `TrainingArguments`."""
    from transformers import Trainer, TrainingArguments

    from peft_shine.data import InstructDataset, ShineDataCollator
    from peft_shine.objective import ShineLoss
    from peft_shine.training import ShineTrainingCallback

    model = build_shine(vocab_size=len(tokenizer)).train()
    with torch.no_grad():  # a random tiny base has near-uniform logits; a sharper head lets the adapter matter
        model.get_base_model().lm_head.weight.mul_(25)
    dataset = InstructDataset(QA, tokenizer, mode="single", seed=0)
    options = dict(
        output_dir=str(tmp_path / "run"),
        max_steps=steps,
        per_device_train_batch_size=2,
        learning_rate=lr,
        remove_unused_columns=False,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        seed=0,
        logging_steps=1,
        dataloader_num_workers=0,
    )
    args = TrainingArguments(**{**options, **overrides})
    loss = ShineLoss(model)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=ShineDataCollator(tokenizer, 64),
        compute_loss_func=loss,
        callbacks=[ShineTrainingCallback(dataset, loss=loss)],
    )
    return trainer, model


def write_jsonl(path: Path, records: list[dict]) -> Path:
    """Write `records` as JSON Lines, gzip-compressed when the name ends in .gz; returns `path`."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8") as handle:
        handle.writelines(json.dumps(record) + "\n" for record in records)
    return path


def default_gguf_or_none():
    """The default base's GGUF path (`peft_shine.defaults.default_gguf_path`), or None when it is not here."""
    from peft_shine.defaults import DefaultModelNotInstalledError, default_gguf_path

    try:
        return default_gguf_path()
    except DefaultModelNotInstalledError:
        return None
