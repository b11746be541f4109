"""The one SHINE model of a web server, shared by every browser session.

A SHINE model answers from one global absorbed context (`use_context`), and Hugging Face tokenizers are not safe to
call from several threads at once. So every model or tokenizer call runs under one lock, and a call that answers
sets the caller's own `AbsorbedContext` for exactly that call and drops it (`forget()`) before releasing the lock.
Sessions keep their `AbsorbedContext` objects themselves; the model never holds one between requests.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from peft import PeftModel
from transformers import PreTrainedTokenizerBase

from ..absorbed import AbsorbedContext
from ..options import AbsorbOptions
from ..tokenization import ICL_TEMPLATE, question_prompt_ids


class ShineEngine:
    """Thread-safe absorb / ask / compose / export on one SHINE `PeftModel` (see the module docstring).

    Args:
        model: a SHINE `PeftModel` in eval mode (e.g. from `peft_shine.defaults.load_default()`).
        tokenizer: the base model's tokenizer, with a chat template.
        max_new_tokens: tokens generated per answer (greedy).
        options: the absorb options of every request (`AbsorbOptions`; default: the adapter's config).
    """

    def __init__(
        self,
        model: PeftModel,
        tokenizer: PreTrainedTokenizerBase,
        max_new_tokens: int = 48,
        options: AbsorbOptions | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.options = model.base_model.absorb_options(options)
        self.lock = threading.Lock()
        self.shine = model.base_model
        self.shine.resolve_tokenizer(tokenizer)
        self.window = getattr(self.shine.model.config, "max_position_embeddings", None)
        model.forget()

    @property
    def busy(self) -> bool:
        """Whether another request holds the model right now."""
        return self.lock.locked()

    @contextmanager
    def using(self, context: AbsorbedContext | None) -> Iterator[None]:
        """Hold the model with `context` absorbed (None: the base model), and forget it afterwards, also on error."""
        with self.lock:
            self.model.use_context(context)
            try:
                yield
            finally:
                self.model.forget()

    def measure(self, text: str) -> tuple[int, int]:
        """(tokens, chunks) that absorbing `text` encodes, under the adapter's overflow policy."""
        with self.lock:
            chunks = self.shine.context_chunks(text, self.tokenizer, self.options)[0]
        return sum(map(len, chunks)), len(chunks)

    def absorb(self, text: str) -> tuple[AbsorbedContext, float]:
        """(the adapter generated from `text`, seconds it took); the model is left without a context."""
        with self.using(None):
            start = time.perf_counter()
            absorbed = self.model.absorb_context(text, tokenizer=self.tokenizer, options=self.options)
            return absorbed, time.perf_counter() - start

    def compose(self, contexts: list[AbsorbedContext]) -> AbsorbedContext:
        """One adapter answering from all `contexts` (single-context objects), the same adapter that
        `model.absorb_context(texts, compose=True)` generates: the mean of the document deltas under
        `chunk_combination="mean"`, their sum under "sum"; compressed to `max_lora_rank` when that is set (the
        engine's absorb options)."""
        if len(contexts) == 1:
            return contexts[0]
        composed = AbsorbedContext.compose(contexts, combination=self.options.chunk_combination)
        return composed.within_rank(self.options.max_lora_rank)

    def ask(self, context: AbsorbedContext | None, question: str) -> str:
        """The answer to `question` (alone in the chat template) with `context` absorbed; None = no context."""
        with self.using(context):
            return self.model.ask(question, max_new_tokens=self.max_new_tokens, tokenizer=self.tokenizer)

    def ask_in_prompt(self, documents: list[str], question: str) -> str:
        """The base model's answer with the documents in the prompt (the in-context baseline, `ICL_TEMPLATE`).
        Returns a note instead when the prompt does not fit the base model's position window."""
        prompt = ICL_TEMPLATE.format(context="\n\n".join(documents), question=question)
        with self.using(None):
            length = len(question_prompt_ids(self.tokenizer, prompt))
            if self.window is not None and length + self.max_new_tokens > self.window:
                return (
                    f"(not answered: the document prompt has {length:,} tokens, more than the base model's "
                    f"{self.window:,}-token window allows; absorbing has no such limit)"
                )
            return self.model.ask(prompt, max_new_tokens=self.max_new_tokens, tokenizer=self.tokenizer)

    @staticmethod
    def export_zip(context: AbsorbedContext, path: str | os.PathLike) -> Path:
        """Zip of exactly the files `context.save_pretrained` writes (adapter_config.json,
        adapter_model.safetensors, shine_context.json): a plain PEFT LoRA once unzipped. Needs no lock."""
        path = Path(path)
        with tempfile.TemporaryDirectory(prefix="shine-export-") as folder:
            adapter = Path(folder) / "adapter"
            context.save_pretrained(adapter)
            with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
                for file in sorted(adapter.iterdir()):
                    archive.write(file, arcname=file.name)
        return path
