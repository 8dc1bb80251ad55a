"""Benchmarks for the course: `python -m bench.run` runs them all, prints a table and writes
bench/results/bench.json."""
