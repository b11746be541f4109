"""Speed and memory of SHINE against the plain base: `python -m benchmarks.speed.run`."""
