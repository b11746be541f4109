"""The speed benchmark's inputs: what is measured (`Settings`), contexts of a given token count cut from one
paragraph, the questions asked about it, SHINE's context limits, and greedy decoding of an exact number of tokens."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from peft import PeftModel
from transformers import PreTrainedTokenizerBase

from benchmarks.common import max_positions
from peft_shine.evaluation import model_device
from peft_shine.padding import pad_id_of
from peft_shine.tokenization import encode_plain

PARAGRAPH = (
    "The lighthouse on Marrow Point was built in 1871 by the engineer Clara Vennet, who had studied bridge design in "
    "Glasgow. Its tower is 38 metres tall and painted in red and white bands. The first keeper, Tomas Hale, kept a "
    "logbook of every ship that passed; in the storm of 1893 he guided the steamer Aurora into the harbour. The lamp "
    "was electrified in 1924 and automated in 1987, when the last keeper, Ingrid Solberg, retired to the village."
)
QUESTIONS = [
    "Who built the lighthouse on Marrow Point?",
    "When was the lighthouse built?",
    "Where did the engineer study?",
    "How tall is the tower?",
    "What colours is the tower painted?",
    "Who was the first keeper?",
    "What did the first keeper record?",
    "Which steamer was guided into the harbour?",
    "In which storm was the steamer guided in?",
    "When was the lamp electrified?",
    "When was the lighthouse automated?",
    "Who was the last keeper?",
    "Where did the last keeper retire to?",
    "What did Clara Vennet design before?",
    "What kind of ship was the Aurora?",
    "How many keepers are named in the text?",
]
DECODE_QUESTION = "Tell me about the lighthouse on Marrow Point."


@dataclass(frozen=True)
class Settings:
    """What is measured: context lengths, question counts, batch sizes, generated tokens, warm-up and repeats."""

    context_lengths: tuple[int, ...] = (128, 256, 512, 1024, 2048, 4096)
    decode_tokens: int = 64
    icl_context_lengths: tuple[int, ...] = (256, 512, 1024, 2048)
    question_counts: tuple[int, ...] = (1, 4, 16)
    answer_tokens: int = 16
    batch_sizes: tuple[int, ...] = (1, 2, 4, 8, 16)
    context_tokens: int = 256  # context of the decoding LoRA and of each batched-absorb context
    warmup: int = 2
    repeats: int = 5


QUICK = Settings(
    context_lengths=(16, 32),
    decode_tokens=4,
    icl_context_lengths=(16, 32),
    question_counts=(1, 2),
    answer_tokens=2,
    batch_sizes=(1, 2),
    context_tokens=16,
    warmup=1,
    repeats=1,
)


def context_text(tokenizer: PreTrainedTokenizerBase, num_tokens: int, offset: int = 0) -> str:
    """`PARAGRAPH` repeated, starting `offset` tokens in, cut to a text of at most (almost always exactly)
    `num_tokens` tokens when encoded as SHINE encodes contexts."""
    unit = encode_plain(tokenizer, [PARAGRAPH + "\n\n"])[0]
    ids = unit * ((offset + num_tokens) // len(unit) + 1)
    for cut in range(num_tokens, 0, -1):
        text = tokenizer.decode(ids[offset : offset + cut])
        if len(encode_plain(tokenizer, [text])[0]) <= num_tokens:
            return text
    raise ValueError(f"Cannot build a context of {num_tokens} tokens with this tokenizer.")


def questions_for(count: int) -> list[str]:
    """The first `count` of `QUESTIONS` (cycled)."""
    return [QUESTIONS[i % len(QUESTIONS)] for i in range(count)]


def context_limit(model: PeftModel) -> int:
    """The longest context SHINE encodes in one pass: `max_context_tokens`, with context + memory tokens within the
    positions."""
    config = model.base_model.shine_config
    positions = max_positions(model)
    if positions is None:
        return config.max_context_tokens
    return min(config.max_context_tokens, positions - config.num_memory_tokens)


def absorb_limit(model: PeftModel) -> int | None:
    """The longest context `absorb_context` accepts: None (any length) when it chunks longer contexts
    (`context_overflow="chunk"`), else `context_limit`."""
    return None if model.base_model.shine_config.context_overflow == "chunk" else context_limit(model)


def context_tokens(model: PeftModel, tokenizer: PreTrainedTokenizerBase, text: str) -> int:
    """Tokens of `text` as `absorb_context` reads it."""
    return int(model.tokenize_contexts(text, tokenizer)[1].sum())


@torch.no_grad()
def generate_exactly(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, prompt_ids: list[int], new_tokens: int
) -> torch.Tensor:
    """Greedy continuation of one prompt of exactly `new_tokens` tokens (min = max new tokens); returns the new ids."""
    ids = torch.tensor([prompt_ids], device=model_device(model))
    output = model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=False,
        pad_token_id=pad_id_of(tokenizer),
    )
    return output[0, ids.shape[1] :]
