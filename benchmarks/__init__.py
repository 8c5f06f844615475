"""Benchmarks and one-shot checks, run from a checkout as modules: ``python -m benchmarks.harness``,
``python -m benchmarks.bench_inference``, ... (benchmarks/README.md)."""
