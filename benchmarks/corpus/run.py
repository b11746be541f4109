"""Corpus absorption throughput: documents/s absorbed one at a time against batched (in input order, and sorted by
length within a window as `absorb_corpus` does), how far batched adapters are from lone ones, and a full
`absorb_corpus` run that also writes every folder.

    python benchmarks/corpus/make_paragraphs.py ../shared/data/squad/dev.jsonl runs/corpus/squad_dev_50.jsonl
    python -m benchmarks.corpus.run --data runs/corpus/squad_dev_50.jsonl --device cpu --output_dir runs/corpus-cpu

Writes `results.json` (measurements and a `machine` block: CPU, cores, load average before and after, versions,
command line) and `results.md` to `--output_dir`. Without `--base`/`--adapter` the embedded default is used.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import machine_info, markdown_table, measure, resolve_device, write_results
from peft_shine.corpus import absorb_corpus, iter_absorbed, padding_share, plan_batches, read_corpus
from peft_shine.corpus.batching import count_tokens
from peft_shine.defaults import load_shine
from peft_shine.evaluation import timed


def measure_plan(model, documents, batches, device: torch.device, repeats: int) -> tuple[float, list]:
    """Median seconds over `repeats` runs of absorbing every document with the batch plan `batches`; the adapters of
    the last run, in document order."""
    runs = measure(device, lambda: list(iter_absorbed(model, documents, batches=batches)), repeats)
    order = {doc.id: i for i, doc in enumerate(documents)}
    return runs.median_s, sorted(runs.result, key=lambda item: order[item.document.id])


def agreement(first: list, second: list) -> dict[str, float]:
    """How far two runs' adapters of the same documents are apart: per document the relative Frobenius error of its
    update ||D_1 - D_2|| / ||D_1|| over all modules (D = A B), its median and maximum, how many documents came out
    bit-identical, and the largest absolute factor difference next to the largest factor."""
    errors, identical, difference, size = [], 0, 0.0, 0.0
    for one, two in zip(first, second, strict=True):
        squared_error, squared_norm, same = 0.0, 0.0, True
        for key, (a, b) in one.absorbed.factors.items():
            a2, b2 = two.absorbed.factors[key]
            same = same and torch.equal(a, a2) and torch.equal(b, b2)
            delta = a[0].double() @ b[0].double()
            squared_error += (delta - a2[0].double() @ b2[0].double()).square().sum().item()
            squared_norm += delta.square().sum().item()
            difference = max(difference, (a - a2).abs().max().item(), (b - b2).abs().max().item())
            size = max(size, a.abs().max().item(), b.abs().max().item())
        errors.append((squared_error / squared_norm) ** 0.5)
        identical += same
    return {
        "median_relative_update_error": statistics.median(errors),
        "max_relative_update_error": max(errors),
        "bit_identical_documents": identical,
        "max_abs_factor_difference": difference,
        "max_abs_factor": size,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = resolve_device(args.device)
    load_before = os.getloadavg()
    model, tokenizer = load_shine(args.base, args.adapter)
    model.to(device)
    documents = read_corpus(args.data, text_field=args.text_field, id_field=args.id_field)[0][: args.limit]
    counts = count_tokens(documents, tokenizer)
    list(iter_absorbed(model, documents[: args.batch_size], batch_size=args.batch_size))  # warm-up
    plans = {
        "one at a time": plan_batches(counts, 1),
        f"batch {args.batch_size}, input order": plan_batches(counts, args.batch_size, args.batch_size),
        f"batch {args.batch_size}, sorted by length": plan_batches(counts, args.batch_size, args.window),
    }
    rows, adapters = [], {}
    for name, plan in plans.items():
        seconds, adapters[name] = measure_plan(model, documents, plan, device, args.repeats)
        rows.append(
            {
                "mode": name,
                "seconds": round(seconds, 3),
                "documents_per_second": round(len(documents) / seconds, 2),
                "padding_share": round(padding_share(counts, plan), 4),
            }
        )
    for row in rows:
        row["speedup"] = round(row["documents_per_second"] / rows[0]["documents_per_second"], 2)
    agreed = agreement(adapters["one at a time"], adapters[rows[-1]["mode"]])
    records = [{"id": doc.id, "text": doc.text} for doc in documents]
    with tempfile.TemporaryDirectory() as folder:
        summary, corpus_seconds = timed(
            device, absorb_corpus, model, records, Path(folder) / "out", batch_size=args.batch_size, progress=False
        )
    return {
        "documents": len(documents),
        "tokens": {"mean": round(statistics.mean(counts), 1), "min": min(counts), "max": max(counts)},
        "modes": rows,
        "batched_vs_one_at_a_time": agreed,
        "absorb_corpus": {
            "documents": summary.absorbed,
            "seconds": round(corpus_seconds, 3),
            "documents_per_second": round(summary.absorbed / corpus_seconds, 2),
            "batch_size": args.batch_size,
        },
        "machine": {
            **machine_info(device),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "model": {"base": args.base or "default", "adapter": args.adapter or "default"},
    }


def markdown(results: dict[str, Any]) -> str:
    """The results as Markdown tables."""
    tokens = results["tokens"]
    lines = [
        f"{results['documents']} documents, {tokens['mean']} tokens on average ({tokens['min']}-{tokens['max']}), "
        f"{results['machine']['device_name']} ({results['machine']['device']}).",
        "",
        markdown_table(
            ["mode", "seconds", "documents/s", "speed-up", "padding"],
            [
                [row["mode"], str(row["seconds"]), str(row["documents_per_second"]), f"{row['speedup']}x"]
                + [f"{100 * row['padding_share']:.1f}%"]
                for row in results["modes"]
            ],
        ).rstrip("\n"),
    ]
    corpus, agreement = results["absorb_corpus"], results["batched_vs_one_at_a_time"]
    lines += [
        "",
        f"`absorb_corpus` (batch {corpus['batch_size']}, folders + model cards + index written): "
        f"{corpus['seconds']} s, {corpus['documents_per_second']} documents/s.",
        "",
        f"Batched (sorted) vs one at a time, per document ||D_batched - D_alone|| / ||D_alone||: median "
        f"{agreement['median_relative_update_error']:.2g}, max {agreement['max_relative_update_error']:.2g}; "
        f"{agreement['bit_identical_documents']} of {results['documents']} documents bit-identical; largest factor "
        f"difference {agreement['max_abs_factor_difference']:.2g} (largest factor {agreement['max_abs_factor']:.2g}).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="JSON Lines corpus (make_paragraphs.py)")
    parser.add_argument("--text_field", default="text")
    parser.add_argument("--id_field", default="id")
    parser.add_argument("--limit", type=int, default=None, help="first N documents")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--window", type=int, default=None, help="documents sorted together (default 16 batches)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--base")
    parser.add_argument("--adapter")
    parser.add_argument("--output_dir", required=True)
    args = parser.parse_args(argv)
    results = run(args)
    write_results(results, markdown(results), Path(args.output_dir))
    print(markdown(results))
    return results


if __name__ == "__main__":
    main()
