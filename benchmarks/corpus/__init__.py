"""Corpus absorption throughput: `python -m benchmarks.corpus.run`."""
