"""The shipped default hypernetwork: loads with plain PEFT onto the embedded SmolLM2 base, and absorbing a
document changes the answer distribution."""

import json

import torch
from peft import PeftModel

import peft_shine  # noqa: F401
from peft_shine.defaults import DEFAULT_ADAPTER_DIR, load_default_base
from peft_shine.tokenization import question_prompt_ids


def test_shipped_checkpoint_loads_with_plain_peft_and_uses_the_context():
    config = json.loads((DEFAULT_ADAPTER_DIR / "adapter_config.json").read_text())
    assert config["peft_type"] == "SHINE" and config["context_overflow"] == "chunk"
    assert sum(p.stat().st_size for p in DEFAULT_ADAPTER_DIR.iterdir()) < 60 * 2**20
    base, tokenizer = load_default_base()
    model = PeftModel.from_pretrained(base, DEFAULT_ADAPTER_DIR).eval()
    document = (DEFAULT_ADAPTER_DIR.parent / "sample_document.md").read_text(encoding="utf-8")
    ids = torch.tensor([question_prompt_ids(tokenizer, "Who is the chair of the Harbour Board?")])
    with torch.no_grad():
        without = model(input_ids=ids).logits[0, -1].log_softmax(-1)
        model.absorb_context(document, tokenizer=tokenizer)
        with_context = model(input_ids=ids).logits[0, -1].log_softmax(-1)
    kl = torch.sum(with_context.exp() * (with_context - without)).item()
    assert kl > 1e-3, f"absorbing the document barely changed the next-token distribution (KL {kl:.2e})"
