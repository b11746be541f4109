"""`peft-shine web`: a Gradio page to absorb documents and ask about them, safe for concurrent users.

Needs the optional extra: `pip install "peft-shine[web]"`. See docs/web.md.

    from peft_shine.defaults import load_default
    from peft_shine.web import build_app, launch

    model, tokenizer = load_default()
    launch(build_app(model, tokenizer), host="127.0.0.1", port=7860)
"""

from .app import ANSWER_TITLES, COMPARE_LABEL, answer_messages, build_app, launch
from .engine import ShineEngine
from .inputs import InputError, WebLimits
from .session import Document, WebSession

__all__ = [
    "ANSWER_TITLES",
    "COMPARE_LABEL",
    "Document",
    "InputError",
    "ShineEngine",
    "WebLimits",
    "WebSession",
    "answer_messages",
    "build_app",
    "launch",
]
