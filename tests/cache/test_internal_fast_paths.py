"""The core's synchronous fast paths for sibling packages (``cache.internal``): they answer
exactly as ``Cache.get``/``Cache.set`` would, count the same, and step aside (``LATER``,
``False``) whenever only the awaited call can answer."""

from __future__ import annotations

import pytest

from asyncperf import Cache, Codec, MemoryStore
from asyncperf.cache.internal import LATER, get_now, set_now

from ..conftest import FakeClock


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
@pytest.mark.parametrize("namespace", ["", "http"])
async def test_get_now_and_set_now_match_the_awaited_calls(
    clock: FakeClock, namespace: str
) -> None:
    root = Cache(MemoryStore(max_entries=100, clock=clock))
    cache = root.namespace(namespace) if namespace else root
    assert set_now(cache, "k", b"v", 10.0, ["t:a", "u:/k"])
    assert await cache.get("k") == b"v"
    assert get_now(cache, "k") == b"v"
    assert get_now(cache, "absent") is None
    stats = cache.statistics()
    assert (stats.hits, stats.misses, stats.sets) == (2, 1, 1)
    # The tags were stored under the namespace, as Cache.set stores them.
    assert await cache.invalidate_tags("t:a") == 1
    assert get_now(cache, "k") is None


@pytest.mark.anyio
@pytest.mark.parametrize("namespace", ["", "http"])
async def test_set_now_stores_what_cache_set_stores(clock: FakeClock, namespace: str) -> None:
    stores = [MemoryStore(max_entries=100, clock=clock) for _ in range(2)]
    through_set, through_now = (
        Cache(store).namespace(namespace) if namespace else Cache(store) for store in stores
    )
    for key, tags in (("a", ["u:/a", "p:/x"]), ("b", ["u:/b", "p:/x"]), ("a", ["u:/a"])):
        await through_set.set(key, b"v-" + key.encode(), ttl=30.0, tags=tags)
        assert set_now(through_now, key, b"v-" + key.encode(), 30.0, tags)
        clock.advance(1.0)
    for key in ("a", "b"):
        full = f"{namespace}:{key}" if namespace else key
        left, right = (store.peek_entry(full) for store in stores)
        assert left is not None
        assert right is not None
        assert (left.value, left.expires_at, left.fresh_until, left.tags) == (
            right.value,
            right.expires_at,
            right.fresh_until,
            right.tags,
        )
    for tag in ("u:/a", "u:/b", "p:/x"):  # the tag index answers alike
        assert await through_set.invalidate_tags(tag) == await through_now.invalidate_tags(tag)
    assert through_set.statistics().sets == through_now.statistics().sets == 3


@pytest.mark.anyio
async def test_an_expired_entry_is_left_to_cache_get(clock: FakeClock) -> None:
    cache = Cache(MemoryStore(max_entries=100, clock=clock))
    await cache.set("k", b"v", ttl=1.0)
    clock.advance(2.0)
    assert get_now(cache, "k") is LATER
    assert await cache.get("k") is None  # which drops it


@pytest.mark.anyio
@pytest.mark.parametrize("ttl", [float("inf"), 0.0, -1.0])
async def test_set_now_steps_aside_for_what_cache_set_must_check(ttl: float) -> None:
    cache = Cache(MemoryStore(max_entries=100))
    tags = ["u:/k"]
    assert not set_now(cache, "k", b"v", ttl, tags)
    assert not set_now(cache, "k" * 201, b"v", 1.0, tags)  # stored hashed by Cache.set
    assert not set_now(cache, "k", b"v", 1.0, [])  # Cache.set overwrites untagged in place
    assert not set_now(Cache(MemoryStore(), ttl_jitter=0.1), "k", b"v", 1.0, tags)
    assert cache.statistics().sets == 0


@pytest.mark.anyio
async def test_stores_that_memory_cannot_answer_are_left_to_the_awaited_calls() -> None:
    coded = Cache(MemoryStore(codec=Codec()))  # values are encoded: Cache.get decodes
    await coded.set("k", {"a": 1})
    assert get_now(coded, "k") is LATER
    assert not set_now(coded, "k", b"v", 1.0, ["u:/k"])
    assert get_now(Cache(MemoryStore()), "k" * 201) is LATER
