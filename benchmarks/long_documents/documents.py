"""The long-document benchmark's documents: SQuAD paragraphs joined into documents of a token budget, the
questions picked per third of a document, and needle paragraphs inserted at a depth."""

from __future__ import annotations

import bisect
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from transformers import PreTrainedTokenizerBase

from peft_shine.evaluation import Record, group_by_context, load_eval_records
from peft_shine.tokenization import encode_plain

POSITIONS = ("first", "middle", "last")
SEPARATOR = "\n\n"
NEEDLE_TEMPLATE = "The secret code of the {name} archive is {code}."
NEEDLE_QUESTION = "What is the secret code of the {name} archive?"
NEEDLE_NAMES = (
    "Albrecht",
    "Baltimore",
    "Corvina",
    "Delmont",
    "Esperanza",
    "Falkirk",
    "Grimsby",
    "Halvard",
    "Isolde",
    "Juniper",
    "Kestrel",
    "Lindqvist",
    "Marigold",
    "Northwind",
    "Ostrava",
    "Pemberton",
)


@dataclass(frozen=True)
class Corpus:
    """Distinct SQuAD paragraphs, their plain-text token counts and the questions written for each."""

    paragraphs: list[str]
    token_counts: list[int]
    questions: list[list[Record]]
    separator_tokens: int


def load_corpus(path: str | Path, tokenizer: PreTrainedTokenizerBase) -> Corpus:
    """The paragraphs of a SQuAD-style JSONL(.gz) file (records with context, question, answers), in file order."""
    records = load_eval_records(path)
    groups = group_by_context(records)
    paragraphs = [context.strip() for context in groups]
    if any(SEPARATOR in paragraph for paragraph in paragraphs):
        raise ValueError(f"{path}: a context contains a blank line; contexts must be single paragraphs.")
    return Corpus(
        paragraphs=paragraphs,
        token_counts=[len(ids) for ids in encode_plain(tokenizer, paragraphs)],
        questions=[[records[index] for index in indices] for indices in groups.values()],
        separator_tokens=len(encode_plain(tokenizer, [SEPARATOR])[0]),
    )


@dataclass(frozen=True)
class Document:
    """Paragraphs joined by blank lines. `sources[i]` is paragraph i's corpus index (None for the needle); `spans` its
    character span in `text`; `token_ends` the end character of every token of `text` (tokenised as SHINE reads it)."""

    text: str
    sources: list[int | None]
    spans: list[tuple[int, int]]
    token_ends: list[int]

    @property
    def num_tokens(self) -> int:
        return len(self.token_ends)

    def token_index(self, char: int) -> int:
        """Index of the token holding character `char` (the number of tokens that end at or before it)."""
        return bisect.bisect_right(self.token_ends, char)

    def centre_fraction(self, slot: int) -> float:
        """Where paragraph `slot`'s centre lies in the document, as a fraction of its tokens."""
        start, end = self.spans[slot]
        return (self.token_index(start) + self.token_index(end)) / (2 * self.num_tokens)


def assemble(tokenizer: PreTrainedTokenizerBase, paragraphs: Sequence[str], sources: Sequence[int | None]) -> Document:
    """Join paragraphs with `SEPARATOR` and record their spans and the token offsets of the text."""
    spans, start = [], 0
    for paragraph in paragraphs:
        spans.append((start, start + len(paragraph)))
        start += len(paragraph) + len(SEPARATOR)
    text = SEPARATOR.join(paragraphs)
    encoding = tokenizer(text, add_special_tokens=False, split_special_tokens=True, return_offsets_mapping=True)
    return Document(text, list(sources), spans, [end for _, end in encoding["offset_mapping"]])


def build_document(
    corpus: Corpus, tokenizer: PreTrainedTokenizerBase, target_tokens: int, rng: random.Random
) -> Document:
    """A document of at most `target_tokens` tokens: paragraphs taken greedily from a seeded shuffle of the corpus
    while they fit, then shuffled again (so the short paragraphs that fill the end are not all at the end). If the
    joined text tokenises longer than the target, its shortest paragraphs are dropped until it fits."""
    order = list(range(len(corpus.paragraphs)))
    rng.shuffle(order)
    chosen: list[int] = []
    used = 0
    for index in order:
        cost = corpus.token_counts[index] + (corpus.separator_tokens if chosen else 0)
        if used + cost <= target_tokens:
            chosen.append(index)
            used += cost
    if not chosen:
        raise ValueError(f"No paragraph of the corpus fits in {target_tokens} tokens; use longer --lengths.")
    rng.shuffle(chosen)
    while True:  # tokens may merge differently across paragraph boundaries: check the joined text
        document = assemble(tokenizer, [corpus.paragraphs[i] for i in chosen], chosen)
        if document.num_tokens <= target_tokens or len(chosen) == 1:
            return document
        chosen.remove(min(chosen, key=corpus.token_counts.__getitem__))


def position_of(fraction: float) -> str:
    """ "first", "middle" or "last" third of the document."""
    return POSITIONS[min(int(fraction * 3), 2)]


def pick_questions(corpus: Corpus, document: Document, per_position: int, rng: random.Random) -> list[Record]:
    """Up to `per_position` questions per third of the document, spread over its paragraphs (round robin over the
    shuffled paragraphs of that third, each with its questions shuffled). Each record holds `position`,
    `position_fraction` and the `paragraph` slot of its gold paragraph."""
    by_position: dict[str, list[int]] = {position: [] for position in POSITIONS}
    for slot, source in enumerate(document.sources):
        if source is not None:
            by_position[position_of(document.centre_fraction(slot))].append(slot)
    picked = []
    for position, slots in by_position.items():
        rng.shuffle(slots)
        pools = {slot: list(corpus.questions[document.sources[slot]]) for slot in slots}
        for pool in pools.values():
            rng.shuffle(pool)
        chosen: list[tuple[int, Record]] = []
        for round_ in range(max((len(pool) for pool in pools.values()), default=0)):
            chosen += [(slot, pools[slot][round_]) for slot in slots if round_ < len(pools[slot])]
        for slot, record in chosen[:per_position]:
            picked.append(
                {
                    "id": record.get("id"),
                    "question": record["question"],
                    "answers": list(record["answers"]),
                    "position": position,
                    "position_fraction": document.centre_fraction(slot),
                    "paragraph": slot,
                }
            )
    return picked


@dataclass(frozen=True)
class Needle:
    """A needle sentence, its question and answer, and where it sits in its document."""

    sentence: str
    question: str
    code: str
    slot: int
    depth: float  # requested
    actual_depth: float  # haystack tokens before the needle / haystack tokens


def insert_paragraph(
    tokenizer: PreTrainedTokenizerBase, haystack: Document, paragraph: str, depth: float
) -> tuple[Document, int]:
    """The haystack with `paragraph` inserted at the paragraph boundary nearest to `depth` of its tokens (0 = before
    the first paragraph, 1 = after the last), and the inserted paragraph's slot."""
    boundaries = [0] + [haystack.token_index(start) for start, _ in haystack.spans[1:]] + [haystack.num_tokens]
    slot = min(range(len(boundaries)), key=lambda b: abs(boundaries[b] / haystack.num_tokens - depth))
    paragraphs = [haystack.text[start:end] for start, end in haystack.spans]
    document = assemble(
        tokenizer,
        paragraphs[:slot] + [paragraph] + paragraphs[slot:],
        haystack.sources[:slot] + [None] + haystack.sources[slot:],
    )
    return document, slot


def needle_document(
    corpus: Corpus, tokenizer: PreTrainedTokenizerBase, length: int, depth: float, rng: random.Random
) -> tuple[Document, Needle]:
    """A haystack of `length` tokens minus the needle's (smaller when the joined text tokenises longer), with the
    needle inserted as its own paragraph at the paragraph boundary nearest to `depth`."""
    name, code = rng.choice(NEEDLE_NAMES), str(rng.randint(1_000_000, 9_999_999))
    sentence = NEEDLE_TEMPLATE.format(name=name, code=code)
    budget = length - len(encode_plain(tokenizer, [sentence])[0]) - corpus.separator_tokens
    while True:
        haystack = build_document(corpus, tokenizer, budget, rng)
        document, slot = insert_paragraph(tokenizer, haystack, sentence, depth)
        if document.num_tokens <= length or len(haystack.sources) == 1:
            break
        budget -= document.num_tokens - length
    start, end = (document.token_index(char) for char in document.spans[slot])
    actual_depth = start / max(document.num_tokens - (end - start), 1)
    question = NEEDLE_QUESTION.format(name=name)
    return document, Needle(sentence, question, code, slot, depth, actual_depth)


def needle_found(answer: str, code: str) -> bool:
    """Whether the code appears in the answer (digit groups joined: "1,234,567" and "1 234 567" count)."""
    return code in re.sub(r"(?<=\d)[,\s](?=\d)", "", answer)
