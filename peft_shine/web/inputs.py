"""What the web page accepts: limits, and checks of pasted text, uploaded files and questions.

Every check raises `InputError` with a message that names the problem and the fix; the app shows it on the page and
changes nothing else (documents absorbed earlier stay).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

TEXT_SUFFIXES = (".txt", ".md")


class InputError(ValueError):
    """Bad input from the page: the message is shown to the user as is."""


@dataclass(frozen=True)
class WebLimits:
    """Limits of one web server.

    Attributes:
        max_chars: characters per document (pasted or uploaded); longer texts are refused, never cut.
        max_documents: absorbed documents one browser session keeps at a time.
        max_question_chars: characters per question.
        max_new_tokens: tokens generated per answer.
        concurrency: requests Gradio runs at once (the model itself serves one at a time, under a lock).
        session_ttl_s: seconds a session's documents stay in memory after its last change.
    """

    max_chars: int = 50_000
    max_documents: int = 8
    max_question_chars: int = 1_000
    max_new_tokens: int = 48
    concurrency: int = 8
    session_ttl_s: int = 4 * 3600

    @property
    def max_upload_bytes(self) -> int:
        """Largest upload Gradio accepts: 4 bytes per allowed character (UTF-8's widest), so the character limit,
        checked after decoding, is the one a user meets."""
        return 4 * self.max_chars + 1024


def check_text(text: str | None, limits: WebLimits, source: str = "The pasted text") -> str:
    """`text` if it is something to absorb: not empty or blank, no NUL bytes, at most `limits.max_chars`."""
    if text is None or not text.strip():
        raise InputError(
            f"{source} is empty; there is nothing to absorb. Paste a document or upload a .txt / .md file."
        )
    if "\x00" in text:
        raise InputError(f"{source} contains NUL bytes, so it is binary data, not text. Paste or upload plain text.")
    if len(text) > limits.max_chars:
        raise InputError(
            f"{source} has {len(text):,} characters; this server absorbs at most {limits.max_chars:,} per document. "
            "Split it into smaller documents, absorb each, and choose them together."
        )
    return text


def read_upload(path: str | os.PathLike, limits: WebLimits) -> tuple[str, str]:
    """(name, text) of an uploaded .txt / .md file: UTF-8, not empty, not binary, within the size limit.

    `name` is the file's stem; Gradio stores uploads under their original file name.
    """
    path = Path(path)
    shown = path.name
    if path.suffix.lower() not in TEXT_SUFFIXES:
        raise InputError(
            f"{shown}: only .txt and .md files can be absorbed (got '{path.suffix or 'no extension'}'). "
            "Save the document as plain text first."
        )
    size = path.stat().st_size
    if size > limits.max_upload_bytes:
        raise InputError(
            f"{shown} is {size:,} bytes; this server absorbs at most {limits.max_chars:,} characters per document. "
            "Split it into smaller files."
        )
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise InputError(
            f"{shown} is not UTF-8 text ({error.reason} at byte {error.start}): it looks like a binary file. "
            "Upload a plain-text .txt or .md file (convert other formats to UTF-8 text first)."
        ) from None
    return path.stem, check_text(text, limits, source=shown)


def check_question(question: str | None, limits: WebLimits) -> str:
    """The stripped question if it is not empty and at most `limits.max_question_chars` long."""
    question = (question or "").strip()
    if not question:
        raise InputError("The question is empty; type a question about the chosen document(s).")
    if len(question) > limits.max_question_chars:
        raise InputError(
            f"The question has {len(question):,} characters; at most {limits.max_question_chars:,} are allowed. "
            "Put long material into a document and absorb it."
        )
    return question
