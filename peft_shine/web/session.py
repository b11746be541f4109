"""One browser session's documents: each absorbed text with its own `AbsorbedContext`, held in the session's
`gr.State`, never in the model."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..absorbed import AbsorbedContext
from .inputs import InputError


@dataclass
class Document:
    """An absorbed document.

    Attributes:
        name: unique within the session (shown in the document list and used as the download's file name).
        text: the document itself, kept only for the "document in the prompt" comparison.
        context: its generated LoRA (one context).
        seconds: how long absorbing took.
    """

    name: str
    text: str
    context: AbsorbedContext
    seconds: float

    def summary(self) -> str:
        """ "name: T tokens, C chunk(s), rank R, absorbed in S s"."""
        context = self.context
        return (
            f"**{self.name}**: {context.context_token_counts[0]:,} tokens, {context.num_chunks[0]} chunk(s), "
            f"rank {context.ranks[0]}, absorbed in {self.seconds:.2f} s"
        )


@dataclass
class WebSession:
    """The documents of one browser session, in the order they were absorbed."""

    documents: dict[str, Document] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return list(self.documents)

    def check_room(self, max_documents: int) -> None:
        """Raise InputError when the session already holds `max_documents` documents."""
        if len(self.documents) >= max_documents:
            raise InputError(
                f"This session already holds {max_documents} documents, the most this server keeps per session. "
                "Remove one (choose it, then 'Remove chosen') before absorbing another."
            )

    def add(self, name: str, text: str, context: AbsorbedContext, seconds: float) -> Document:
        """Keep a new document under a unique version of `name` ("report", "report (2)", ...)."""
        base = " ".join(re.sub(r"[^\w .+()-]", " ", name).split())[:60] or "document"
        unique, number = base, 2
        while unique in self.documents:
            unique, number = f"{base} ({number})", number + 1
        document = Document(unique, text, context, seconds)
        self.documents[unique] = document
        return document

    def chosen(self, names: list[str] | None) -> list[Document]:
        """The documents named in `names`, in session order. InputError when there are none to answer from."""
        if not self.documents:
            raise InputError("No document is absorbed yet: paste a text or upload a file, press 'Absorb', then ask.")
        names = list(names or [])
        unknown = [name for name in names if name not in self.documents]
        if unknown:
            raise InputError(f"Unknown document(s) {unknown}; choose from {self.names}.")
        if not names:
            raise InputError("No document is chosen: tick one (or several, to compose them) in 'Documents'.")
        return [document for name, document in self.documents.items() if name in names]

    def remove(self, names: list[str] | None) -> list[str]:
        """Drop the named documents; returns the names removed. InputError when none is chosen."""
        removed = [name for name in names or [] if self.documents.pop(name, None) is not None]
        if not removed:
            raise InputError("Choose the document(s) to remove in 'Documents' first.")
        return removed
