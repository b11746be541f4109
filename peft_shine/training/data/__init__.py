"""Training data for SHINE: loaders, the stage-1 (RECON / COMP pretraining) and stage-2 (multi-QA, single-QA with
distractors) example builders, a context-length curriculum, torch datasets for `transformers.Trainer`, and the
collator that pads answering passes (right) and contexts (left) into one batch.

An example is a dict of python int lists: `input_ids` (L,) and `labels` (L,) for the answering pass (a chat whose
assistant turns are the targets; every other position is -100) and `context_input_ids` (T,) for the evidence the
hypernetwork reads, plus a string `kind` for logging. The collator turns a list of them into (B, L) and (B, T) tensors.
For the optional distillation objective (`peft_shine.training.distillation`) a stage-2 example also carries
`teacher_input_ids` / `teacher_labels` (L_t,): the same chat with the evidence in the first user turn.

Modules: `loading` (texts, records grouped by context), `chat` (answer-only labels), `examples` (the builders),
`curriculum`, `datasets`, `collator`. QA records are read and validated by `peft_shine.qa_records`, the loader
evaluation uses too.
"""

from ...padding import IGNORE_INDEX
from ...qa_records import load_qa_records
from .chat import COMP_INSTRUCTION, QA, RECON_INSTRUCTION, encode_chat
from .collator import ShineDataCollator
from .curriculum import curriculum_context, short_context
from .datasets import InstructDataset, PretrainDataset
from .examples import (
    DISTRACTOR_SEPARATOR,
    PACK_SEPARATOR,
    build_multi_qa_example,
    build_pretrain_example,
    build_single_qa_example,
    join_with_distractors,
    pack_texts,
    word_prefix,
)
from .loading import group_by_context, load_texts

__all__ = [
    "COMP_INSTRUCTION",
    "DISTRACTOR_SEPARATOR",
    "IGNORE_INDEX",
    "PACK_SEPARATOR",
    "QA",
    "RECON_INSTRUCTION",
    "InstructDataset",
    "PretrainDataset",
    "ShineDataCollator",
    "build_multi_qa_example",
    "build_pretrain_example",
    "build_single_qa_example",
    "curriculum_context",
    "encode_chat",
    "group_by_context",
    "join_with_distractors",
    "load_qa_records",
    "load_texts",
    "pack_texts",
    "short_context",
    "word_prefix",
]
