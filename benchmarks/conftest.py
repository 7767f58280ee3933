"""Benchmarks report figures (pytest-benchmark); they are not part of `make test`."""
