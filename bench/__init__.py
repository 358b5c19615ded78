"""Benchmarks and the tools they run: timings live here, never in tests/."""
