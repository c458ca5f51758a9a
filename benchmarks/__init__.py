"""Benchmarks of the cassava-edge runtime: `python -m benchmarks.latency --help`."""
