"""Benchmarks that measure the solver against its parts (``raysolve bench``, ``jobs/bench_*``):
engine alone vs solver, cancellation latency, scaling, and their result files."""
