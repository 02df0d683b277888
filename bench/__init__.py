"""pytest-benchmark suite for asyncperf (see bench/README.md)."""
