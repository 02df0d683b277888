"""MemoryStore: LRU order, TTL (lazy + swept), entry and byte caps, tags, threads."""

from __future__ import annotations

import random
import sys
import threading

import pytest

from asyncperf import Codec, ConfigurationError, Entry, MemoryStore, SerializationError
from asyncperf.cache._memory import ENTRY_OVERHEAD, estimate_size

from ..conftest import FakeClock


def put(store: MemoryStore, key: str, value: object, ttl: float | None = None, tags=()) -> None:
    store.set_entry(key, Entry(value, tags=tuple(tags)), ttl)


def value_of(store: MemoryStore, key: str) -> object:
    entry = store.get_entry(key)
    return None if entry is None else entry.value


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"max_entries": 0}, "max_entries"),
        ({"max_entries": -5}, "max_entries"),
        ({"max_entries": 1.5}, "max_entries"),
        ({"max_entries": True}, "max_entries"),
        ({"max_bytes": 0}, "max_bytes"),
        ({"max_bytes": -1}, "max_bytes"),
        ({"max_bytes": "64MB"}, "max_bytes"),
    ],
)
def test_bad_caps_are_configuration_errors(kwargs: dict, word: str) -> None:
    with pytest.raises(ConfigurationError, match=word):
        MemoryStore(**kwargs)


def test_configuration_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        MemoryStore(max_entries=0)


def test_lru_evicts_least_recently_used_first() -> None:
    store = MemoryStore(max_entries=3)
    for key in "abc":
        put(store, key, key)
    assert value_of(store, "a") == "a"  # a is now most recent; b is the oldest
    put(store, "d", "d")
    assert store.keys() == ["c", "a", "d"]
    assert store.statistics().evictions == 1
    put(store, "e", "e")
    assert store.get_entry("c") is None
    assert store.statistics().evictions == 2


def test_overwrite_moves_key_to_most_recent() -> None:
    store = MemoryStore(max_entries=2)
    put(store, "a", 1)
    put(store, "b", 2)
    store.set_value("a", 10, None)  # in-place overwrite path
    put(store, "c", 3)
    assert store.keys() == ["a", "c"]
    assert value_of(store, "a") == 10


def test_ttl_expires_lazily_on_read(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    put(store, "k", "v", ttl=10)
    clock.advance(9.999)
    assert value_of(store, "k") == "v"
    clock.advance(0.001)
    assert store.get_entry("k") is None
    stats = store.statistics()
    assert stats.expirations == 1
    assert stats.entries == 0


def test_sweep_on_writes_drops_expired_entries_nobody_reads(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    for i in range(100):
        put(store, f"old{i}", i, ttl=5)
    clock.advance(7)
    put(store, "trigger", 0, ttl=100)  # a write runs the amortised sweep
    stats = store.statistics()
    assert stats.expirations == 100
    assert stats.entries == 1
    assert not store._wheel.get(1_005), "swept buckets are released"


def test_sweep_is_bounded_per_write_and_finishes_over_several(clock: FakeClock) -> None:
    store = MemoryStore(max_entries=10_000, clock=clock)
    for i in range(2_000):
        put(store, f"k{i}", i, ttl=1)
    clock.advance(5)
    put(store, "w0", 0)
    first = store.statistics().expirations
    assert 0 < first < 2_000
    for i in range(1, 10):
        put(store, f"w{i}", i)
    assert store.statistics().expirations == 2_000


def test_extended_ttl_is_not_swept_early(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    put(store, "k", 1, ttl=2)
    store.set_value("k", 2, 100)  # extends: no new wheel reference, moved on by the sweep
    clock.advance(10)
    put(store, "other", 0)  # sweep passes the old bucket
    assert value_of(store, "k") == 2
    clock.advance(100)
    put(store, "other2", 0)
    assert store.get_entry("k") is None
    assert store.statistics().expirations == 1


def test_shortened_ttl_is_honoured_by_the_sweep(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    put(store, "k", 1, ttl=1000)
    store.set_value("k", 2, 1)
    clock.advance(3)
    put(store, "other", 0)
    assert store.statistics().expirations == 1
    assert "k" not in store.keys()


def test_explicit_sweep(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    for i in range(5_000):
        put(store, f"k{i}", i, ttl=1)
    clock.advance(2)
    assert store.sweep() == 5_000
    assert len(store) == 0


def test_wheel_stays_bounded_under_hot_overwrites(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    for i in range(50_000):
        clock.advance(0.01)
        # shrinking TTLs force a new wheel reference every time
        put(store, "hot", i, ttl=1_000_000 - i)
    assert store._wheel_items <= 2 * len(store) + 1024


def test_entry_cap_holds_under_random_workload() -> None:
    rng = random.Random(7)
    store = MemoryStore(max_entries=100)
    for _ in range(10_000):
        put(store, f"k{rng.randrange(1000)}", 0)
        assert len(store) <= 100


def test_byte_cap_is_never_exceeded_and_accounting_is_exact(clock: FakeClock) -> None:
    rng = random.Random(42)
    cap = 200_000
    store = MemoryStore(max_entries=1_000_000, max_bytes=cap, clock=clock)
    for step in range(5_000):
        key = f"key{rng.randrange(2_000)}"
        kind = rng.randrange(4)
        if kind == 0:
            value: object = "x" * rng.randrange(0, 3_000)
        elif kind == 1:
            value = list(range(rng.randrange(0, 200)))
        elif kind == 2:
            value = {f"f{i}": i for i in range(rng.randrange(0, 30))}
        else:
            store.delete_entry(key)
            continue
        put(store, key, value, ttl=rng.choice([None, 1, 5, 50]), tags=[f"t{step % 7}"])
        if step % 500 == 0:
            clock.advance(3)
            store.invalidate_tags_sync([f"t{rng.randrange(7)}"])
        stats = store.statistics()
        assert stats.bytes <= cap
        assert stats.bytes == sum(e.size for e in store._data.values())
    assert store.statistics().evictions > 0


def test_byte_accounting_includes_key_and_overhead() -> None:
    store = MemoryStore(max_bytes=10**9, sizeof=lambda value: 100)
    put(store, "abc", object())
    assert store.statistics().bytes == 100 + sys.getsizeof("abc") + ENTRY_OVERHEAD


def test_value_larger_than_cap_is_rejected_and_old_value_dropped() -> None:
    store = MemoryStore(max_bytes=1_000)
    put(store, "k", "small")
    put(store, "k", "x" * 5_000)
    assert store.get_entry("k") is None
    stats = store.statistics()
    assert stats.rejected == 1
    assert stats.bytes == 0


def test_codec_mode_accounts_encoded_size_and_isolates_values() -> None:
    store = MemoryStore(max_bytes=10**6, codec=Codec())
    value = {"a": [1, 2, 3]}
    put(store, "k", value)
    value["a"].append(4)  # later mutation is not seen: the store keeps bytes
    assert value_of(store, "k") == {"a": [1, 2, 3]}
    encoded = store._data["k"].value
    assert isinstance(encoded, bytes)
    assert store.statistics().bytes == len(encoded) + sys.getsizeof("k") + ENTRY_OVERHEAD


def test_codec_mode_rejects_unencodable_values_and_keeps_nothing() -> None:
    store = MemoryStore(codec=Codec())
    with pytest.raises(SerializationError, match="object"):
        put(store, "k", object())
    assert len(store) == 0


def test_plain_mode_keeps_the_same_object() -> None:
    store = MemoryStore()
    value = {"a": 1}
    put(store, "k", value)
    assert value_of(store, "k") is value


def test_tags_index_follows_removals() -> None:
    store = MemoryStore(max_entries=2)
    put(store, "a", 1, tags=["t"])
    put(store, "b", 2, tags=["t", "u"])
    put(store, "c", 3, tags=["u"])  # evicts a
    assert store._tags == {"t": {"b"}, "u": {"b", "c"}}
    assert store.invalidate_tags_sync(["u"]) == 2
    assert store._tags == {}
    assert len(store) == 0


def test_a_tag_naming_one_key_is_kept_without_a_set() -> None:
    # Most tags name one entry (an HTTP response's URL tag): the index keeps the key
    # itself, a set only from the second key on, and every path reads both forms.
    store = MemoryStore()
    put(store, "a", 1, tags=["own", "shared"])
    put(store, "b", 2, tags=["shared"])
    assert store._tags == {"own": "a", "shared": {"a", "b"}}
    put(store, "a", 3, tags=["own"])  # overwritten: its old tags go, its new ones come
    assert store._tags == {"own": "a", "shared": {"b"}}
    put(store, "c", 4, tags=["solo"])
    assert store.invalidate_tags_sync(["solo"]) == 1
    assert store.delete_entry("a")
    assert store._tags == {"shared": {"b"}}
    assert store.invalidate_tags_sync(["own", "shared"]) == 1
    assert store._tags == {}
    assert len(store) == 0


def test_retagging_an_overwritten_key() -> None:
    store = MemoryStore()
    put(store, "a", 1, tags=["old"])
    put(store, "a", 2, tags=["new"])
    assert store.invalidate_tags_sync(["old"]) == 0
    assert value_of(store, "a") == 2
    assert store.invalidate_tags_sync(["new"]) == 1


def test_clear_by_prefix_and_all() -> None:
    store = MemoryStore()
    for key in ("users:1", "users:2", "orders:1", "usersx"):
        put(store, key, 1, ttl=10, tags=["t"])
    assert store.clear_sync("users:") == 2
    assert sorted(store.keys()) == ["orders:1", "usersx"]
    assert store.clear_sync() == 2
    assert len(store) == 0
    assert store.statistics().bytes == 0
    assert store._tags == {}


def test_delete_reports_whether_a_live_entry_was_there(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    put(store, "k", 1, ttl=1)
    assert store.delete_entry("k") is True
    assert store.delete_entry("k") is False
    put(store, "k", 1, ttl=1)
    clock.advance(2)
    assert store.delete_entry("k") is False


def test_peek_does_not_touch_recency() -> None:
    store = MemoryStore(max_entries=2)
    put(store, "a", 1)
    put(store, "b", 2)
    assert store.peek_entry("a").value == 1
    put(store, "c", 3)
    assert store.keys() == ["b", "c"]


def test_estimate_size_counts_containers_and_shared_containers_once() -> None:
    shared = list(range(1000))
    one = estimate_size([shared])
    two = estimate_size([shared, shared])
    assert two - one == 8  # one more pointer, the shared list counted once
    assert estimate_size({"k": "x" * 1000}) > 1000
    assert estimate_size("x" * 1000) == sys.getsizeof("x" * 1000)

    class Plain:
        def __init__(self) -> None:
            self.payload = "y" * 500

    assert estimate_size(Plain()) > 500


def test_threads_and_readers_keep_the_store_consistent() -> None:
    store = MemoryStore(max_entries=500, max_bytes=400_000)
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        barrier.wait()
        try:
            for i in range(3_000):
                key = f"k{rng.randrange(800)}"
                op = rng.randrange(10)
                if op < 5:
                    put(store, key, "v" * rng.randrange(200), ttl=rng.choice([None, 0.001, 60]))
                elif op < 6:
                    store.set_value(key, i, 60)
                elif op < 8:
                    store.delete_entry(key)
                elif op < 9:
                    store.invalidate_tags_sync([f"t{i % 3}"])
                else:
                    store.get_entry(key)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def reader() -> None:
        barrier.wait()
        try:
            for i in range(20_000):
                store.get_entry(f"k{i % 800}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(s,)) for s in range(4)]
    threads += [threading.Thread(target=reader) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    stats = store.statistics()
    assert stats.entries <= 500
    assert stats.bytes <= 400_000
    assert stats.bytes == sum(e.size for e in store._data.values())


async def test_async_protocol_methods(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    await store.set("a", Entry(1), 10)
    await store.set_many([("b", Entry(2), None), ("c", Entry(3, tags=("t",)), None)])
    got = await store.get_many(["a", "b", "zz"])
    assert [e.value if e else None for e in got] == [1, 2, None]
    assert (await store.get("c")).value == 3
    assert await store.delete("a") is True
    assert await store.delete_many(["b", "zz"]) == 1
    assert await store.invalidate_tags(["t"]) == 1
    await store.set("d", Entry(4), None)
    assert await store.clear() == 1
    health = await store.health()
    assert health.ok
    assert health.backend == "memory"
    async with store as entered:
        assert entered is store


def test_repr_mentions_caps() -> None:
    assert "max_entries=5" in repr(MemoryStore(max_entries=5))


def test_lock_free_reads_never_break_a_locked_walk_of_the_entries() -> None:
    # Reads move keys to the end without the lock (atomic under the GIL); a walk of the
    # entries under the lock (the expiry wheel's rebuild, a prefix delete) must not see
    # that as "mutated during iteration". Thread switches are forced to be frequent.
    import sys
    import threading

    store = MemoryStore()
    for i in range(2_000):
        store.set_value(f"k{i}", i, ttl=60)
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        i = 0
        while not stop.is_set():
            store.get_entry(f"k{i % 2_000}")
            i += 7

    def walker() -> None:
        try:
            for round_ in range(200):
                with store._lock:
                    store._rebuild_wheel()
                store.set_value(f"x{round_}", round_, ttl=60)
                store.clear_sync(f"x{round_}")
        except BaseException as error:  # the failure under test
            errors.append(error)
        finally:
            stop.set()

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=reader) for _ in range(3)]
        threads.append(threading.Thread(target=walker))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert errors == []
    assert store.get_entry("k1") is not None
