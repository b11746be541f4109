"""Invented-facts documents: context-QA records that can only be answered by copying from the text.

SQuAD answers are often guessable from the base model's priors; these are not. Every document is about an invented
person, town or organisation (pronounceable names built from syllables, random years and numbers), written with
varied sentence templates in a random order, and every question's answer is a span of the document. Answers are
tagged `answer_kind`: "open" (a new name, place or number the base cannot know) or "closed" (a value from a small
set, e.g. an instrument or a colour), so evaluations can report the copying skill separately.

    python -m peft_shine.training.synthetic --output runs/synthetic.jsonl --documents 3000 --seed 0
    python -m peft_shine.training.synthetic --output runs/synthetic_texts.jsonl --documents 3000 --seed 0 --texts

Records: {"id", "context", "question", "answers": [span], "answer_kind", "source": "synthetic"} (the QA record format
of `peft_shine.training.data.load_qa_records`). Different seeds give different names, so a held-out set is a new
seed. With `--texts`, one {"text": document} per document instead (stage-1 RECON/COMP texts for `examples/pretrain.py`).
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass
from pathlib import Path

SYLLABLES = (
    "ka ver lo mir dan tho bel rus quin zor fen gal hed is nor pel sar tov ul wen yar bri cor dre esk fal gro jun "
    "lam mor nev os pra rel sti tam vol wyn ard bex cal dor el fin har ith kel lun mav ost ren sol tir vash"
).split()
TOWN_SUFFIXES = ("by", "ford", "wick", "ton", "holm", "stead", "mere", "dale", "bridge", "haven")
ORG_KINDS = ("Institute", "Company", "Society", "Works", "Foundation", "Guild")
CLOSED = {
    "profession": ("painter", "engineer", "teacher", "surgeon", "architect", "sailor", "baker", "chemist", "poet"),
    "instrument": ("violin", "cello", "flute", "piano", "harp", "trumpet", "guitar", "oboe", "drums"),
    "colour": ("red", "blue", "green", "yellow", "purple", "orange", "white", "black", "grey"),
    "animal": ("horse", "cat", "dog", "parrot", "goat", "owl", "fox", "rabbit", "tortoise"),
    "product": ("cheese", "glass", "clocks", "rope", "paper", "wool", "bells", "boats", "ink"),
}


@dataclass(frozen=True)
class Fact:
    """One fact of a document: the value (a span of the text), its sentence templates and its question templates.
    Templates use {subject} for the document's subject and {value} for the value."""

    value: str
    kind: str  # "open" or "closed"
    sentences: tuple[str, ...]
    questions: tuple[str, ...]


class NameMaker:
    """Pronounceable invented names from a seeded random stream."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def word(self, low: int = 2, high: int = 3) -> str:
        return "".join(self.rng.choice(SYLLABLES) for _ in range(self.rng.randint(low, high))).capitalize()

    def person(self) -> str:
        return f"{self.word(2, 2)} {self.word(2, 3)}"

    def town(self) -> str:
        return self.word(1, 2) + self.rng.choice(TOWN_SUFFIXES)

    def river(self) -> str:
        return f"{self.word(2, 2)} River"

    def organisation(self) -> str:
        return f"{self.word(2, 3)} {self.rng.choice(ORG_KINDS)}"

    def year(self) -> str:
        return str(self.rng.randint(1520, 2015))

    def number(self) -> str:
        return str(
            self.rng.choice([self.rng.randint(12, 99), self.rng.randint(100, 999), self.rng.randint(1000, 9999)])
        )

    def closed(self, kind: str) -> str:
        return self.rng.choice(CLOSED[kind])


def person_facts(names: NameMaker) -> tuple[str, list[Fact]]:
    """An invented person and the facts about them."""
    o, c = "open", "closed"
    facts = [
        Fact(
            names.year(),
            o,
            ("{subject} was born in {value}.", "In {value}, {subject} was born."),
            ("In what year was {subject} born?", "When was {subject} born?"),
        ),
        Fact(
            names.town(),
            o,
            ("{subject} grew up in the town of {value}.", "{subject}'s home town was {value}."),
            ("In which town did {subject} grow up?", "What was the home town of {subject}?"),
        ),
        Fact(
            names.river(),
            o,
            ("As a child, {subject} fished in the {value}.", "{subject} swam in the {value} every summer."),
            (
                "Which river did {subject} fish or swim in as a child?",
                "What river is named in the story of {subject}'s childhood?",
            ),
        ),
        Fact(
            names.person(),
            o,
            ("{subject} married {value}.", "The spouse of {subject} was {value}."),
            ("Whom did {subject} marry?", "Who was the spouse of {subject}?"),
        ),
        Fact(
            names.organisation(),
            o,
            ("{subject} founded the {value}.", "The {value} was founded by {subject}."),
            ("What did {subject} found?", "Which organisation was founded by {subject}?"),
        ),
        Fact(
            names.number(),
            o,
            ("{subject} wrote {value} letters to friends.", "Over a lifetime, {subject} wrote {value} letters."),
            ("How many letters did {subject} write?", "What number of letters did {subject} write?"),
        ),
        Fact(
            names.closed("profession"),
            c,
            ("{subject} worked as a {value}.", "By profession, {subject} was a {value}."),
            ("What was the profession of {subject}?", "What did {subject} work as?"),
        ),
        Fact(
            names.closed("instrument"),
            c,
            ("{subject} played the {value}.", "In the evenings {subject} played the {value}."),
            ("Which instrument did {subject} play?", "What instrument did {subject} play?"),
        ),
        Fact(
            names.closed("colour"),
            c,
            ("{subject}'s favourite colour was {value}.", "{subject} always wore {value}."),
            ("What colour did {subject} like best?", "Which colour is linked to {subject}?"),
        ),
        Fact(
            names.closed("animal"),
            c,
            ("{subject} kept a {value} as a pet.", "A {value} lived with {subject}."),
            ("What pet did {subject} keep?", "Which animal lived with {subject}?"),
        ),
    ]
    return names.person(), facts


def town_facts(names: NameMaker) -> tuple[str, list[Fact]]:
    """An invented town and the facts about it."""
    o, c = "open", "closed"
    facts = [
        Fact(
            names.year(),
            o,
            ("{subject} was founded in {value}.", "The town of {subject} dates from {value}."),
            ("When was {subject} founded?", "In what year was {subject} founded?"),
        ),
        Fact(
            names.river(),
            o,
            ("{subject} lies on the banks of the {value}.", "The {value} flows through {subject}."),
            ("On which river does {subject} lie?", "Which river flows through {subject}?"),
        ),
        Fact(
            names.number(),
            o,
            ("{subject} has {value} inhabitants.", "About {value} people live in {subject}."),
            ("How many people live in {subject}?", "What is the population of {subject}?"),
        ),
        Fact(
            names.person(),
            o,
            ("The mayor of {subject} is {value}.", "{value} serves as mayor of {subject}."),
            ("Who is the mayor of {subject}?", "Who serves as mayor of {subject}?"),
        ),
        Fact(
            names.town(),
            o,
            ("{subject} is twinned with {value}.", "The twin town of {subject} is {value}."),
            ("Which town is twinned with {subject}?", "What is the twin town of {subject}?"),
        ),
        Fact(
            names.closed("product"),
            c,
            ("{subject} is known for its {value}.", "Merchants travel to {subject} to buy {value}."),
            ("What is {subject} known for?", "What do merchants buy in {subject}?"),
        ),
        Fact(
            names.closed("colour"),
            c,
            ("The roofs of {subject} are painted {value}.", "The flag of {subject} is {value}."),
            ("What colour is linked to {subject}?", "Which colour are the roofs or flag of {subject}?"),
        ),
    ]
    return names.town(), facts


def organisation_facts(names: NameMaker) -> tuple[str, list[Fact]]:
    """An invented organisation and the facts about it."""
    o, c = "open", "closed"
    facts = [
        Fact(
            names.person(),
            o,
            ("The {subject} was founded by {value}.", "{value} started the {subject}."),
            ("Who founded the {subject}?", "Who started the {subject}?"),
        ),
        Fact(
            names.year(),
            o,
            ("The {subject} opened in {value}.", "The {subject} began its work in {value}."),
            ("When did the {subject} open?", "In what year did the {subject} begin its work?"),
        ),
        Fact(
            names.town(),
            o,
            ("The {subject} has its seat in {value}.", "The offices of the {subject} are in {value}."),
            ("Where does the {subject} have its seat?", "In which town are the offices of the {subject}?"),
        ),
        Fact(
            names.number(),
            o,
            ("The {subject} employs {value} people.", "{value} people work for the {subject}."),
            ("How many people does the {subject} employ?", "How many people work for the {subject}?"),
        ),
        Fact(
            names.closed("product"),
            c,
            ("The {subject} makes {value}.", "The {subject} sells {value}."),
            ("What does the {subject} make?", "What does the {subject} sell?"),
        ),
    ]
    return names.organisation(), facts


SUBJECTS = (person_facts, town_facts, organisation_facts)


def synthetic_document(rng: random.Random, min_facts: int = 3, max_facts: int = 8) -> list[dict]:
    """One invented document as QA records (one question per fact, all sharing the context)."""
    subject, facts = rng.choice(SUBJECTS)(NameMaker(rng))
    facts = rng.sample(facts, min(len(facts), rng.randint(min_facts, max_facts)))
    context = " ".join(rng.choice(f.sentences).format(subject=subject, value=f.value) for f in facts)
    context = context[0].upper() + context[1:]
    return [
        {
            "context": context,
            "question": rng.choice(f.questions).format(subject=subject),
            "answers": [f.value],
            "answer_kind": f.kind,
            "source": "synthetic",
        }
        for f in facts
    ]


def synthetic_records(num_documents: int, seed: int = 0, min_facts: int = 3, max_facts: int = 8) -> list[dict]:
    """QA records of `num_documents` invented documents (each 3-8 facts), with ids "syn-<seed>-<doc>-<fact>"."""
    if num_documents < 1 or not 1 <= min_facts <= max_facts:
        raise ValueError(
            f"Need num_documents >= 1 and 1 <= min_facts <= max_facts, got {num_documents}, {min_facts}, {max_facts}."
        )
    rng = random.Random(f"synthetic:{seed}")
    records = []
    for doc in range(num_documents):
        for index, record in enumerate(synthetic_document(rng, min_facts, max_facts)):
            records.append({"id": f"syn-{seed}-{doc}-{index}", **record})
    return records


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True, help="JSON Lines file to write")
    parser.add_argument("--documents", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min_facts", type=int, default=3)
    parser.add_argument("--max_facts", type=int, default=8)
    parser.add_argument("--texts", action="store_true", help='write {"text": document} records, one per document')
    args = parser.parse_args(argv)
    records = synthetic_records(args.documents, args.seed, args.min_facts, args.max_facts)
    if args.texts:
        records = [{"text": context} for context in dict.fromkeys(record["context"] for record in records)]
    path = Path(args.output)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    what = "documents" if args.texts else f"questions about {args.documents} invented documents"
    print(f"{path}: {len(records)} {what}")


if __name__ == "__main__":
    main()
