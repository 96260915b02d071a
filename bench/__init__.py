"""Benchmarks that print figures, each a ratio against a baseline measured in the same run.

Run one with `python -m bench.<name>` (booking, discovery, cli, dashboard, pipeline, memory)
or all with `python -m bench.run_all`, which also writes `bench/results.md`. Nothing here
asserts on time: the figures are read by people, next to their targets.
"""
