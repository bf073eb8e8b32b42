"""Benchmarks (``python -m tfdisc.benchmarks.ops``); never imported by tfdisc."""
