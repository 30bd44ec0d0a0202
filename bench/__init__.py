"""Benchmarks, each a module runnable as `python -m bench.<name>`."""
