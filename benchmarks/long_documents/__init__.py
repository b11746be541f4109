"""Questions about the start, middle and end of long documents: `python -m benchmarks.long_documents.run`."""
