"""Engines that are not models: ``scripted`` (the TEST engine: scripted texts, for
deterministic tests of the layers above), ``loadgen`` (a BENCHMARK load generator),
``toolmix`` (a BENCHMARK wrapper that injects code calls), and the random-weight model
builder used by benchmarks. None of them is offered as a model backend."""
