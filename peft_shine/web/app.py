"""The Gradio page: absorb documents, ask about them in a chat, compare, compose, download a plain PEFT LoRA.

Each browser session keeps its documents (`WebSession`, in a `gr.State`); the shared model is driven through
`ShineEngine`, which sets a session's context under a lock for exactly one request. API names (for `gradio_client`):
`/absorb`, `/ask`, `/export`, `/remove`.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import tempfile
import time
from importlib.resources import files
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
from peft import PeftModel  # noqa: E402
from transformers import PreTrainedTokenizerBase  # noqa: E402

from .about import describe_limits, describe_model  # noqa: E402
from .engine import ShineEngine  # noqa: E402
from .inputs import InputError, WebLimits, check_question, check_text, read_upload  # noqa: E402
from .session import WebSession  # noqa: E402

EXPORT_MAX_AGE_S = 3600
COMPARE_LABEL = "Compare: also answer without context and with the document(s) in the prompt"
ANSWER_TITLES = ("SHINE (absorbed)", "Without context", "Document(s) in the prompt")
SAMPLE_NAME = "Sample - Harbour Board note"
PAGE_CSS = "#export, #remove, #sample {white-space: nowrap; min-width: max-content;}"
"""Page style (Gradio 6 takes it at launch): the buttons beside each other keep their labels on one line."""


def answer_messages(shine: str, without: str | None = None, in_prompt: str | None = None) -> list[dict]:
    """The chat's reply: SHINE's answer alone, or, when comparing, three assistant messages, each titled (`metadata`
    title, shown as a labelled, open box): SHINE, without context, document(s) in the prompt."""
    if without is None:
        return [{"role": "assistant", "content": shine}]
    answers = (shine, without, in_prompt)
    return [{"role": "assistant", "content": a, "metadata": {"title": t}} for t, a in zip(ANSWER_TITLES, answers)]


def sample_document() -> tuple[str, str, str]:
    """(text, name, first question) of the bundled sample document, for the page's sample button."""
    assets = files("peft_shine") / "assets"
    questions = json.loads((assets / "sample_questions.json").read_text(encoding="utf-8"))
    return (assets / "sample_document.md").read_text(encoding="utf-8"), SAMPLE_NAME, questions[0]["question"]


def absorbing_status(text: str | None, upload: str | None) -> str:
    """What the status line says the moment 'Absorb' is pressed (before the queue runs the request)."""
    source = Path(upload).name if upload else "the pasted text" if (text or "").strip() else None
    return f"**Absorbing {source} ...**" if source else ""


def _shown_on_page(handler):
    """Turn `InputError` (and the model's own ValueError about an input) into a `gr.Error` the page shows; the
    session and every output stay as they were."""

    @functools.wraps(handler)
    def wrapper(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except (InputError, ValueError) as error:
            raise gr.Error(str(error), duration=None, print_exception=False) from None

    return wrapper


def _documents_markdown(session: WebSession, limits: WebLimits) -> str:
    if not session.documents:
        return "No document absorbed yet."
    lines = [f"- {document.summary()}" for document in session.documents.values()]
    return "\n".join([*lines, f"\n{len(session.documents)} of {limits.max_documents} documents in this session."])


def _describe_given(model: PeftModel) -> str:
    """`describe_model` for a model handed to `build_app` in code: named by its base."""
    shine = model.base_model
    base = getattr(shine.model, "name_or_path", "") or "a base model given in code"
    return describe_model(model, str(base), "a SHINE model given in code")


class WebApp:
    """Handlers of the page, bound to one engine and one set of limits."""

    def __init__(self, engine: ShineEngine, limits: WebLimits) -> None:
        self.engine = engine
        self.limits = limits
        self.export_dir = Path(tempfile.mkdtemp(prefix="peft-shine-web-"))

    def absorb(self, text, upload, name, session: WebSession, progress=gr.Progress()):  # noqa: B008
        """Paste or upload -> a new document of the session. Returns (stats, document choices, paste, upload,
        name, session)."""
        text = text or ""
        if upload and text.strip():
            raise InputError("Both a pasted text and a file are given; clear one of them, then press 'Absorb'.")
        if upload:
            stem, text = read_upload(upload, self.limits)
        else:
            stem, text = "pasted text", check_text(text, self.limits)
        session.check_room(self.limits.max_documents)
        progress(0.0, desc="Waiting for the model (another request is using it)" if self.engine.busy else "Reading")
        tokens, chunks = self.engine.measure(text)
        progress(0.2, desc=f"Absorbing {tokens:,} tokens in {chunks} chunk(s)")
        context, seconds = self.engine.absorb(text)
        document = session.add((name or "").strip() or stem, text, context, seconds)
        progress(1.0, desc="Absorbed")
        choices = gr.CheckboxGroup(choices=session.names, value=[document.name])
        return _documents_markdown(session, self.limits), choices, "", None, "", session

    def ask(self, question, history, chosen, compare, session: WebSession):
        """A question about the chosen documents (composed when several) -> (chat history, cleared question)."""
        documents = session.chosen(chosen)
        question = check_question(question, self.limits)
        context = self.engine.compose([document.context for document in documents])
        answer = self.engine.ask(context, question)
        without = in_prompt = None
        if compare:
            without = self.engine.ask(None, question)
            in_prompt = self.engine.ask_in_prompt([document.text for document in documents], question)
        reply = answer_messages(answer, without, in_prompt)
        return [*(history or []), {"role": "user", "content": question}, *reply], ""

    def export(self, chosen, session: WebSession) -> str:
        """The chosen document(s) (composed when several) as a zip of a plain PEFT LoRA -> its path."""
        documents = session.chosen(chosen)
        context = self.engine.compose([document.context for document in documents])
        self._drop_old_exports()
        stem = re.sub(r"[^\w.+-]+", "_", "+".join(document.name for document in documents))[:80]
        folder = Path(tempfile.mkdtemp(dir=self.export_dir))
        return str(self.engine.export_zip(context, folder / f"{stem}-lora.zip"))

    def remove(self, chosen, session: WebSession):
        """Drop the chosen documents -> (stats, document choices, session)."""
        session.remove(chosen)
        return _documents_markdown(session, self.limits), gr.CheckboxGroup(choices=session.names, value=[]), session

    def _drop_old_exports(self) -> None:
        """Delete exports older than an hour (Gradio serves its own copy of each)."""
        for folder in self.export_dir.iterdir():
            if time.time() - folder.stat().st_mtime > EXPORT_MAX_AGE_S:
                shutil.rmtree(folder, ignore_errors=True)


def build_app(
    model: PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    *,
    about: str | None = None,
    limits: WebLimits | None = None,
) -> gr.Blocks:
    """The page for one SHINE model (a SHINE `PeftModel` and its base tokenizer); `about` is the Markdown naming
    what is loaded (default: the base's `name_or_path` and the adapter's source, via `describe_model`). Launch it with
    `launch(demo, limits)`."""
    limits = limits or WebLimits()
    handlers = WebApp(ShineEngine(model, tokenizer, max_new_tokens=limits.max_new_tokens), limits)
    with gr.Blocks(
        title="peft-shine", analytics_enabled=False, delete_cache=(EXPORT_MAX_AGE_S, EXPORT_MAX_AGE_S)
    ) as demo:
        session = gr.State(WebSession(), time_to_live=limits.session_ttl_s)
        gr.Markdown(
            "# peft-shine: absorb a document, then ask about it\nSHINE reads the text once and writes a LoRA "
            "adapter; the answers then come without the document in the prompt."
        )
        gr.Markdown(about or _describe_given(model), elem_id="about")
        gr.Markdown(describe_limits(limits), elem_id="limits")
        with gr.Row():
            with gr.Column(scale=2):
                paste = gr.Textbox(label="Paste a document", lines=8, max_lines=16, elem_id="paste")
                upload = gr.File(
                    label="... or upload a .txt / .md file",
                    file_types=[".txt", ".md"],
                    type="filepath",
                    elem_id="upload",
                    height=120,
                )
                name = gr.Textbox(label="Name (optional)", max_lines=1, elem_id="doc-name")
                with gr.Row():
                    absorb = gr.Button("Absorb", variant="primary", elem_id="absorb")
                    sample = gr.Button("Try the sample document", elem_id="sample")
                status = gr.Markdown("", elem_id="absorb-status")
                documents = gr.CheckboxGroup(
                    label="Documents (the ticked ones answer; several are composed into one adapter)",
                    choices=[],
                    elem_id="documents",
                )
                stats = gr.Markdown("No document absorbed yet.", elem_id="stats")
                with gr.Row():
                    export = gr.Button("Download ticked as LoRA (.zip)", elem_id="export")
                    remove = gr.Button("Remove ticked", elem_id="remove")
                lora = gr.File(label="Plain PEFT LoRA", interactive=False, elem_id="lora", height=80, visible=False)
            with gr.Column(scale=3):
                chat = gr.Chatbot(label="Questions", render_markdown=False, height=420, elem_id="chat")
                question = gr.Textbox(label="Question", max_lines=3, elem_id="question")
                compare = gr.Checkbox(label=COMPARE_LABEL, elem_id="compare")
                with gr.Row():
                    ask = gr.Button("Ask", variant="primary", elem_id="ask")
                    gr.ClearButton([chat], value="Clear chat")

        def absorb_with_status(trigger, endpoint: dict) -> None:
            """The status line says "Absorbing ..." at once, the request's progress shows on it alone (not on every
            output), and it is cleared when the request ends, absorbed or refused."""
            shown = trigger(absorbing_status, [paste, upload], [status], queue=False, api_visibility="private")
            absorbed = shown.then(
                _shown_on_page(handlers.absorb),
                [paste, upload, name, session],
                [stats, documents, paste, upload, name, session],
                show_progress_on=[status],
                **endpoint,
            )
            for ended in (absorbed.success, absorbed.failure):
                ended(lambda: "", None, [status], queue=False, api_visibility="private")

        absorb_with_status(absorb.click, {"api_name": "absorb"})
        filled = sample.click(sample_document, None, [paste, name, question], queue=False, api_visibility="private")
        absorb_with_status(filled.then, {"api_visibility": "private"})
        gr.on(
            [ask.click, question.submit],
            _shown_on_page(handlers.ask),
            [question, chat, documents, compare, session],
            [chat, question],
            api_name="ask",
        )
        exported = export.click(_shown_on_page(handlers.export), [documents, session], [lora], api_name="export")
        exported.success(lambda: gr.File(visible=True), None, [lora], queue=False, api_visibility="private")
        remove.click(
            _shown_on_page(handlers.remove), [documents, session], [stats, documents, session], api_name="remove"
        )
    return demo


def launch(
    demo: gr.Blocks,
    limits: WebLimits | None = None,
    host: str = "127.0.0.1",
    port: int = 7860,
    block: bool = True,
    share: bool = False,
) -> str:
    """Serve `demo` on host:port (Gradio's queue runs up to `limits.concurrency` requests at once; the model takes
    them in turn), and with `share` also through a public gradio.live link. With `block=False` it returns at once
    (tests). Returns the local URL."""
    limits = limits or WebLimits()
    demo.queue(default_concurrency_limit=limits.concurrency)
    demo.launch(
        server_name=host,
        server_port=port,
        share=share,
        max_file_size=limits.max_upload_bytes,
        prevent_thread_lock=not block,
        show_error=True,
        ssr_mode=False,
        css=PAGE_CSS,
        quiet=not block,
    )
    return demo.local_url
