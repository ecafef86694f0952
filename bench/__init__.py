"""Benchmarks of the 天网 task bridge: `python -m bench.run` (see bench/README.md)."""
