"""Benchmarks: each module prints figures (run as `python -m bench.<name>`)."""
