"""Recipe ablations: the table and loss curves (`python -m benchmarks.recipes.table`), step and throughput timings."""
