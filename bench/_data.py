"""Settings and the data set every benchmark shares."""

from __future__ import annotations

import os

QUICK = os.environ.get("ASYNCPERF_BENCH_QUICK", "").strip().lower() not in ("", "0", "false", "no")

# Full mode follows the method of the peer study (notes/cache-peers.md): 20 000 ops per
# sample, a warm-up, then the median of several samples.
OPS = 1_000 if QUICK else 20_000
ROUNDS = 3 if QUICK else 7
WARMUP_ROUNDS = 1

# The data set of the memory benchmarks: 1000 keys, each holding a 5-field dict.
KEY_COUNT = 1_000
KEYS = [f"user:{i}" for i in range(KEY_COUNT)]
VALUES = {
    key: {
        "id": i,
        "name": f"user {i}",
        "email": f"user{i}@example.com",
        "active": i % 3 != 0,
        "score": i * 1.5,
    }
    for i, key in enumerate(KEYS)
}
VALUE = VALUES[KEYS[0]]
