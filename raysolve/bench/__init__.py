"""Benchmarks that measure the solver against its parts (``raysolve bench``, ``jobs/bench_*``,
``jobs/gpu_smoke.py``): ``harness`` (engine alone vs solver, cancellation latency, scaling),
``orchestration`` (``raysolve bench``), ``gpu_probes`` (the GPU smoke test), ``sandbox``,
``serve_load``, ``engine_compare``, ``engine_throughput``, ``budgets``, ``policies``, ``tiny_eval``
and ``files`` (result files). The ``jobs/`` scripts keep the flags, printing and plots."""
