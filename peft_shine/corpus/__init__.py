"""Absorb a whole corpus: every document into its own plain LoRA adapter, batched, sharded, resumable, on one process
or many (see docs/serving.md for serving the results).

- `records`: read and validate (id, text) records (`read_corpus`);
- `batching`: the length-sorted batch plan and the batched absorb loop (`plan_batches`, `iter_absorbed`);
- `storage`: folders with model cards, packed shards, reading back (`load_absorbed`, `CorpusReader`);
- `index`: per-process progress files and the merged `index.jsonl`;
- `runner`: `absorb_corpus`, which ties them together.
"""

from .batching import AbsorbedDocument, iter_absorbed, padding_share, plan_batches
from .records import CorpusRecordError, Document, SkippedRecord, read_corpus
from .runner import CorpusSummary, absorb_corpus, process_rank
from .storage import CorpusReader, load_absorbed

__all__ = [
    "AbsorbedDocument",
    "CorpusReader",
    "CorpusRecordError",
    "CorpusSummary",
    "Document",
    "SkippedRecord",
    "absorb_corpus",
    "iter_absorbed",
    "load_absorbed",
    "padding_share",
    "plan_batches",
    "process_rank",
    "read_corpus",
]
