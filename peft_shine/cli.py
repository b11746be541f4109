"""`peft-shine` console script: demo, eval, absorb, ask.

    peft-shine demo [--num-questions N]
    peft-shine eval --data FILE.jsonl[.gz] --methods none,icl,sft,shine --limit N --output results.json
    peft-shine absorb FILE... --output DIR [--base B --adapter A]
    peft-shine absorb-corpus --data DOCS.jsonl[.gz]|DATASET --output DIR [--format folders|shards] [--on-error skip]
    peft-shine ask "question" (--adapter DIR | --context-file FILE) [--base B]
    peft-shine web [--base B --adapter A] [--host 127.0.0.1 --port 7860]   (needs peft-shine[web])

Without `--base`/`--adapter` the embedded default (SmolLM2-135M-Instruct + the shipped hypernetwork) is used.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from importlib.resources import files
from pathlib import Path

import torch
from peft import PeftConfig, PeftModel
from tqdm.auto import tqdm

from .defaults import DEFAULT_ADAPTER_DIR, load_base, load_default, load_shine
from .evaluation import evaluate, generate_answers, load_eval_records, markdown_table, save_results
from .tokenization import ICL_TEMPLATE


def read_text_file(path: str) -> str:
    """A UTF-8 text file's content; clear errors for missing, non-UTF-8 or empty files."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SystemExit(f"error: {path}: no such file") from None
    except UnicodeDecodeError as error:
        raise SystemExit(
            f"error: {path} is not UTF-8 text ({error.reason} at byte {error.start}); convert it first"
        ) from None
    if not text.strip():
        raise SystemExit(f"error: {path} is empty; there is nothing to absorb")
    return text


# --------------------------------------------------------------------------------------------------------------------


def run_demo(args: argparse.Namespace) -> None:
    assets = files("peft_shine") / "assets"
    document = (assets / "sample_document.md").read_text(encoding="utf-8")
    questions = json.loads((assets / "sample_questions.json").read_text(encoding="utf-8"))[: args.num_questions]
    print("Loading SmolLM2-135M-Instruct with the shipped SHINE hypernetwork ...", flush=True)
    model, _ = load_default()
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
    model, tokenizer = load_shine(args.base, args.adapter)
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    records = load_eval_records(args.data, limit=args.limit, seed=args.seed)
    results = evaluate(
        model,
        tokenizer,
        records,
        methods=methods,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        base_factory=lambda: load_base(args.base)[0].to(device),
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
    model, _ = load_shine(args.base, args.adapter)
    options = {"chunk_combination": args.chunk_combination}
    if args.max_rank is not None:
        options["max_lora_rank"] = args.max_rank
    absorbed = model.absorb_context(texts, compose=args.compose, **options)
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
    from .corpus import absorb_corpus

    model, _ = load_shine(args.base, args.adapter)
    if args.chunk_combination is not None:
        model.peft_config[model.active_adapter].chunk_combination = args.chunk_combination
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
            max_rank=args.max_rank,
            on_error=args.on_error,
            base_model=args.base_model,
            adapter_name="peft-shine default hypernetwork" if default else args.adapter or "peft-shine default",
        )
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(f"error: {error}") from None
    skipped = len(summary.skipped)
    print(
        f"{summary.absorbed} documents absorbed ({summary.reused} already done), {skipped} "
        f"record{'' if skipped == 1 else 's'} skipped, in {summary.seconds:.1f} s "
        f"({summary.documents_per_second:.2f} documents/s) -> {summary.output}"
        + (f"; index: {summary.output / 'index.jsonl'}" if summary.merged else f" (rank {summary.rank})")
    )


def run_ask(args: argparse.Namespace) -> None:
    if args.context_file:
        model, _ = load_shine(args.base, args.adapter)
        model.absorb_context(read_text_file(args.context_file))
        print(model.ask(args.question, max_new_tokens=args.max_new_tokens))
        return
    if not args.adapter:
        raise SystemExit("error: give --adapter DIR (an exported LoRA) or --context-file FILE")
    if PeftConfig.from_pretrained(args.adapter).peft_type == "SHINE":
        raise SystemExit(f"error: {args.adapter} is a SHINE hypernetwork; add --context-file FILE to absorb first")
    base, tokenizer = load_base(args.base)
    model = PeftModel.from_pretrained(base, args.adapter).eval()
    print(generate_answers(model, tokenizer, [args.question], max_new_tokens=args.max_new_tokens)[0])


def run_web(args: argparse.Namespace) -> None:
    try:
        from .web import WebLimits, build_app, launch
        from .web.about import describe_model
    except ImportError as error:
        raise SystemExit(
            f"error: the web page needs the optional 'web' extra ({error.name} is missing): "
            "pip install 'peft-shine[web]' (make setup installs it)"
        ) from None
    model, tokenizer = load_shine(args.base, args.adapter)
    limits = WebLimits(
        max_chars=args.max_chars,
        max_documents=args.max_documents,
        max_new_tokens=args.max_new_tokens,
        concurrency=args.concurrency,
    )
    demo = build_app(model, tokenizer, about=describe_model(model, args.base, args.adapter), limits=limits)
    print(f"Serving on http://{args.host}:{args.port} (Ctrl+C stops it)", flush=True)
    launch(demo, limits, host=args.host, port=args.port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="peft-shine", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="absorb a bundled document with the default model and ask questions")
    demo.add_argument("--num-questions", type=int, default=6)
    demo.add_argument("--max-new-tokens", type=int, default=24)
    demo.set_defaults(run=run_demo)

    evaluation = commands.add_parser("eval", help="answer F1/EM of none / icl / sft / shine on a QA JSONL file")
    evaluation.add_argument("--data", required=True, help="JSONL(.gz) with context, question, answers")
    evaluation.add_argument("--methods", default="none,icl,shine", help="none, icl, icl_short, shine, sft")
    evaluation.add_argument("--limit", type=int, default=None, help="seeded random sample of N records")
    evaluation.add_argument("--output", required=True, help="results JSON (a Markdown table is written beside it)")
    evaluation.add_argument("--batch-size", type=int, default=8)
    evaluation.add_argument("--max-new-tokens", type=int, default=32)
    evaluation.add_argument("--sft-epochs", type=int, default=10)
    evaluation.add_argument("--seed", type=int, default=0)
    evaluation.add_argument(
        "--likelihood",
        action="store_true",
        help="also score the teacher-forced log-likelihood of the gold answer (none / shine / icl)",
    )
    evaluation.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (auto: cuda when available)")
    evaluation.add_argument(
        "--reference", help="results JSON of an earlier eval on the same data with 'none': reused for splits and gains"
    )
    evaluation.set_defaults(run=run_eval)

    absorb = commands.add_parser("absorb", help="absorb text files and write each as a plain PEFT LoRA")
    absorb.add_argument("files", nargs="+")
    absorb.add_argument("--output", required=True)
    absorb.add_argument("--compose", action="store_true", help="one adapter holding all files")
    absorb.add_argument("--max-rank", type=int, help="compress each adapter to this rank (truncated SVD)")
    absorb.add_argument(
        "--chunk-combination",
        choices=["mean", "sum"],
        help="combine chunk (and --compose document) deltas by their mean or sum (default: the adapter's setting)",
    )
    absorb.set_defaults(run=run_absorb)

    corpus = commands.add_parser(
        "absorb-corpus", help="absorb every document of a corpus into its own plain PEFT LoRA (resumable)"
    )
    corpus.add_argument("--data", required=True, help="JSONL(.gz), a `datasets` folder, or a Hub dataset id")
    corpus.add_argument("--split", help="dataset split (Hub datasets and DatasetDict folders)")
    corpus.add_argument("--text-field", default="text")
    corpus.add_argument("--id-field", default="id")
    corpus.add_argument("--output", required=True)
    corpus.add_argument("--format", choices=["folders", "shards"], default="folders")
    corpus.add_argument("--batch-size", type=int, help="documents per encode batch (default: 1 on CPU, 8 on GPU)")
    corpus.add_argument("--window", type=int, help="documents sorted by length together (default 16 batches)")
    corpus.add_argument("--shard-size", type=int, default=256, help="documents per shard (--format shards)")
    corpus.add_argument("--max-rank", type=int, help="compress each adapter to this rank (truncated SVD)")
    corpus.add_argument("--chunk-combination", choices=["mean", "sum"], help="as for absorb")
    corpus.add_argument("--on-error", choices=["stop", "skip"], default="stop", help="bad records: stop or skip")
    corpus.add_argument("--base-model", help="base model name for adapter_config.json and the model cards")
    corpus.set_defaults(run=run_absorb_corpus)

    ask = commands.add_parser("ask", help="answer a question from an exported LoRA or a context file")
    ask.add_argument("question")
    ask.add_argument("--context-file")
    ask.add_argument("--max-new-tokens", type=int, default=48)
    ask.set_defaults(run=run_ask)

    web = commands.add_parser("web", help="a web page to absorb documents and ask about them (peft-shine[web])")
    web.add_argument("--host", default="127.0.0.1", help="0.0.0.0 serves the whole network (default: this machine)")
    web.add_argument("--port", type=int, default=7860)
    web.add_argument("--max-chars", type=int, default=50_000, help="characters per document")
    web.add_argument("--max-documents", type=int, default=8, help="documents per browser session")
    web.add_argument("--max-new-tokens", type=int, default=48)
    web.add_argument("--concurrency", type=int, default=8, help="requests handled at once (the model takes turns)")
    web.set_defaults(run=run_web)

    for command in (evaluation, absorb, corpus, ask, web):
        command.add_argument("--base", help="base model path or Hub id (default: embedded SmolLM2-135M-Instruct)")
        command.add_argument("--adapter", help="SHINE adapter (ask: also an exported LoRA); default: shipped one")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main(sys.argv[1:])
