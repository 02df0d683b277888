"""RFC 9111 behaviour beyond the basics, through real servers (uvicorn and aiohttp) and
over a memory and a Redis-backed cache: revalidation of retained entries, Age, ranges,
errors with explicit freshness, heuristic freshness, request directives, HEAD updates,
Vary normalisation and keeping the app's own coding."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest

from asyncperf import Cache, MemoryStore, RedisStore

from ._apps import GZIPPED, PAD, body_of

REDIS_URL = "redis://127.0.0.1:6379/0"

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> Callable[[], dict[str, Any]]:
    """Options for ``serve`` that put the responses in memory or in a real Redis."""
    if request.param == "memory":
        return lambda: {"cache": Cache(MemoryStore())}
    prefix = request.getfixturevalue("redis_prefix")

    def options() -> dict[str, Any]:
        cache = Cache(RedisStore(REDIS_URL, prefix=prefix), fallback=None)
        return {"cache": cache, "cleanup": cache.aclose}

    return options


def client(served) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=served.base_url, timeout=10.0)


async def at_once(http: httpx.AsyncClient, path: str, count: int) -> list[httpx.Response]:
    """GET ``path`` ``count`` times concurrently; the answers in the order they came."""
    answers: list[httpx.Response] = []

    async def fetch() -> None:
        answers.append(await http.get(path))

    async with anyio.create_task_group() as group:
        for _ in range(count):
            group.start_soon(fetch)
    return answers


# -- revalidation of retained entries (§4.3) -------------------------------------------------


async def test_a_stale_entry_with_a_validator_is_revalidated_and_freshened_by_a_304(
    serve, backend
) -> None:
    served = serve(**backend())
    async with client(served) as http:
        first = await http.get("/validated")
        await anyio.sleep(1.2)  # past max-age=1 in real time: the store would have dropped it
        served.clock.advance(2)
        revalidated = await http.get("/validated")
        again = await http.get("/validated")
    assert first.headers["x-cache"] == "MISS"
    seen = served.state.seen["validated"]
    assert seen[1]["if-none-match"] == '"v1"'
    assert seen[1]["if-modified-since"] == "Tue, 01 Jul 2025 10:00:00 GMT"
    assert revalidated.status_code == 200
    assert revalidated.content == first.content == body_of("validated", 1)
    assert revalidated.headers["x-cache"] == "HIT"
    assert "fwd=stale" in revalidated.headers["cache-status"]
    assert "fwd-status=304" in revalidated.headers["cache-status"]
    # The 304's fields updated the stored ones; Content-Length is the body's.
    assert revalidated.headers["x-refreshed"] == "2"
    assert revalidated.headers["content-length"] == str(revalidated.num_bytes_downloaded)
    assert again.headers["x-cache"] == "HIT"  # freshened: no request to the app
    assert again.headers["x-refreshed"] == "2"
    assert served.state.calls["validated"] == 2
    stats = served.rc.statistics()
    assert stats.revalidations == 1
    assert stats.hits == 2


async def test_concurrent_revalidations_of_one_stale_entry_ask_the_app_once(serve, backend) -> None:
    served = serve(**backend())
    async with client(served) as http:
        first = await http.get("/slow-validated")
        served.clock.advance(5)  # stale, retained, with no stale-while-revalidate window
        answers = await at_once(http, "/slow-validated", 10)
    assert first.headers["x-cache"] == "MISS"
    seen = served.state.seen["slow-validated"]
    assert [entry["if-none-match"] for entry in seen] == [None, '"v1"']  # one revalidation
    assert all(answer.status_code == 200 for answer in answers)
    assert all(answer.content == body_of("slow-validated", 1) for answer in answers)
    assert all(answer.headers["x-cache"] == "HIT" for answer in answers)
    confirmed = [answer for answer in answers if "fwd-status=304" in answer.headers["cache-status"]]
    assert len(confirmed) == 1  # the leader; the other nine were served what it refreshed
    stats = served.rc.statistics()
    assert stats.revalidations == 1
    assert stats.coalesced == 9


async def test_revalidations_of_an_entry_stale_at_once_are_not_queued(serve) -> None:
    # max-age=0: a 304 leaves the entry stale, so waiting for another request's 304 would
    # only delay each request's own revalidation; they run side by side.
    served = serve()
    served.state.cache_control["slow-validated"] = "max-age=0"
    async with client(served) as http:
        await http.get("/slow-validated")
        answers = await at_once(http, "/slow-validated", 5)
    seen = served.state.seen["slow-validated"]
    assert [entry["if-none-match"] for entry in seen] == [None] + ['"v1"'] * 5
    assert served.state.most_inflight["slow-validated"] == 5  # concurrent, not one by one
    assert all("fwd-status=304" in answer.headers["cache-status"] for answer in answers)
    assert served.rc.statistics().coalesced == 0


async def test_a_failed_revalidation_keeps_the_url_coalescible(serve) -> None:
    served = serve()
    async with client(served) as http:
        await http.get("/slow-validated")
        served.clock.advance(5)
        served.state.fail = True
        failed = await http.get("/slow-validated")
        served.state.fail = False
        answers = await at_once(http, "/slow-validated", 5)
    assert failed.status_code == 503
    seen = served.state.seen["slow-validated"]
    # The miss, the failed revalidation, then one revalidation for the five.
    assert [entry["if-none-match"] for entry in seen] == [None, '"v1"', '"v1"']
    assert all(answer.status_code == 200 for answer in answers)
    assert served.rc.statistics().coalesced == 4


async def test_an_etag_only_entry_keeps_its_retention_after_a_304(serve, backend) -> None:
    served = serve(**backend())
    async with client(served) as http:
        first = await http.get("/etag-only")
        answers = []
        for _ in range(2):
            await anyio.sleep(1.2)  # past max-age=1 in real time too: only retention keeps it
            served.clock.advance(2)
            answers.append(await http.get("/etag-only"))
    assert first.headers["x-cache"] == "MISS"
    assert [entry["if-none-match"] for entry in served.state.seen["etag-only"]] == [
        None,
        '"e1"',
        '"e1"',
    ]
    assert all("fwd-status=304" in answer.headers["cache-status"] for answer in answers)


async def test_a_200_to_a_revalidation_replaces_the_entry(serve, backend) -> None:
    served = serve(**backend())
    async with client(served) as http:
        await http.get("/validated")
        served.clock.advance(5)
        served.state.version = 2
        replaced = await http.get("/validated")
        hit = await http.get("/validated", headers={"accept-encoding": "identity"})
    assert served.state.seen["validated"][1]["if-none-match"] == '"v1"'
    assert replaced.content == body_of("validated", 2)
    assert "fwd=stale; fwd-status=200" in replaced.headers["cache-status"]
    assert hit.headers["x-cache"] == "HIT"
    assert hit.content == body_of("validated", 2)
    assert hit.headers["etag"] == '"v2"'  # the identity body keeps the app's tag


async def test_retain_zero_drops_stale_entries(serve) -> None:
    served = serve(retain=0)
    async with client(served) as http:
        await http.get("/validated")
        await anyio.sleep(1.2)
        served.clock.advance(2)
        second = await http.get("/validated")
    assert second.headers["x-cache"] == "MISS"
    assert served.state.seen["validated"][1]["if-none-match"] is None


@pytest.mark.parametrize("directive", ["no-cache", "max-age=60, must-revalidate"])
async def test_no_cache_and_must_revalidate_entries_are_revalidated(serve, directive) -> None:
    served = serve()
    served.state.cache_control["validated"] = directive
    async with client(served) as http:
        await http.get("/validated")
        served.clock.advance(120)  # stale for must-revalidate; no-cache is never fresh
        answers = [await http.get("/validated") for _ in range(2)]
    # no-cache: every reuse is validated; must-revalidate: once stale (the 304 freshens it).
    expected = [None, '"v1"', '"v1"'] if directive == "no-cache" else [None, '"v1"']
    assert [entry["if-none-match"] for entry in served.state.seen["validated"]] == expected
    assert all(answer.headers["x-cache"] == "HIT" for answer in answers)
    assert all(answer.content == body_of("validated", 1) for answer in answers)


# -- Age (§4.2.3) -------------------------------------------------------------------------


async def test_upstream_age_counts_and_a_response_stale_on_arrival_is_kept_to_revalidate(
    serve, backend
) -> None:
    served = serve(**backend())
    async with client(served) as http:
        first = await http.get("/aged")
        served.clock.advance(10)
        second = await http.get("/aged")
    # Age 7200 > max-age 3600: stale as it arrives. The Age sent is the upstream's.
    assert int(first.headers["age"]) >= 7200
    assert second.headers["x-cache"] == "HIT"
    assert "fwd-status=304" in second.headers["cache-status"]
    assert served.state.seen["aged"][1]["if-none-match"] == '"aged"'
    assert int(second.headers["age"]) >= 7200
    assert second.content == first.content


async def test_age_sent_on_a_hit_is_upstream_age_plus_residence(serve) -> None:
    served = serve()
    served.state.cache_control["validated"] = "max-age=60"
    async with client(served) as http:
        await http.get("/validated")
        served.clock.advance(7)
        hit = await http.get("/validated")
    assert hit.headers["x-cache"] == "HIT"
    assert hit.headers["age"] == "7"


# -- storable statuses and heuristic freshness (§3, §4.2.2) ---------------------------------


async def test_an_error_with_explicit_freshness_is_stored(serve, backend) -> None:
    served = serve(**backend())
    async with client(served) as http:
        answers = [await http.get("/error-fresh") for _ in range(2)]
        errors = [await http.get("/error") for _ in range(2)]
    assert [a.status_code for a in answers] == [503, 503]
    assert [a.headers["x-cache"] for a in answers] == ["MISS", "HIT"]
    assert answers[1].content == b"maintenance"
    assert served.state.calls["error-fresh"] == 1
    # Without explicit freshness an error is never stored, even with default_ttl.
    assert [e.headers["x-cache"] for e in errors] == ["MISS", "MISS"]
    assert served.state.calls["error"] == 2


async def test_heuristic_freshness_from_last_modified_and_turning_it_off(serve) -> None:
    served = serve()
    off = serve(heuristic=None)
    async with client(served) as http:
        on = [await http.get("/lastmod") for _ in range(2)]
    async with client(off) as http:
        without = [await http.get("/lastmod") for _ in range(2)]
    assert [r.headers["x-cache"] for r in on] == ["MISS", "HIT"]
    # Fresh for a tenth of the time since Last-Modified, capped at a day.
    assert 0 < int(on[1].headers["cache-status"].split("ttl=")[1]) <= 86_400
    assert [r.headers["x-cache"] for r in without] == ["MISS", "MISS"]


@pytest.mark.parametrize("status", [500, 507, 0])
async def test_stale_if_error_covers_every_5xx_and_exceptions(serve, status: int) -> None:
    served = serve()
    async with client(served) as http:
        await http.get("/sie")
        served.clock.advance(10)
        served.state.fail = True
        served.state.fail_status = status  # 0: the handler raises
        stale = await http.get("/sie")
    assert stale.status_code == 200
    assert stale.headers["x-cache"] == "STALE"
    assert stale.content == body_of("sie", 1)


# -- request directives (§5.2.1) -----------------------------------------------------------


async def test_request_max_stale_min_fresh_and_max_age(serve) -> None:
    served = serve()
    async with client(served) as http:
        await http.get("/public")  # max-age=60
        served.clock.advance(50)
        min_fresh = await http.get("/public", headers={"cache-control": "min-fresh=30"})
        served.clock.advance(70)  # the answer above replaced the entry: now 10 s stale
        stale_ok = await http.get("/public", headers={"cache-control": "max-stale=30"})
        too_stale = await http.get("/public", headers={"cache-control": "max-stale=5"})
        served.clock.advance(10)  # the answer above replaced it again: 10 s old, fresh
        max_age = await http.get("/public", headers={"cache-control": "max-age=5"})
    assert min_fresh.headers["x-cache"] == "MISS"  # 10 s fresh left < 30: asked the app
    assert "fwd=stale" in min_fresh.headers["cache-status"]
    assert stale_ok.headers["x-cache"] == "STALE"
    assert too_stale.headers["x-cache"] == "MISS"
    assert max_age.headers["x-cache"] == "MISS"
    assert "fwd=request" in max_age.headers["cache-status"]


async def test_invalid_max_age_with_a_space_is_not_fresh(serve) -> None:
    served = serve()
    served.state.cache_control["validated"] = "max-age= 3600"
    async with client(served) as http:
        await http.get("/validated")
        second = await http.get("/validated")
    # Kept for revalidation (it has an ETag), never reused as fresh.
    assert served.state.seen["validated"][1]["if-none-match"] == '"v1"'
    assert "fwd-status=304" in second.headers["cache-status"]


# -- ranges (RFC 9110 §14) -----------------------------------------------------------------


async def test_ranges_are_answered_from_a_stored_complete_response(serve, backend) -> None:
    served = serve(**backend())
    async with client(served) as http:
        full = await http.get("/public")
        body = full.content
        size = len(body)
        first = await http.get("/public", headers={"range": "bytes=0-9"})
        suffix = await http.get("/public", headers={"range": "bytes=-5"})
        open_ended = await http.get("/public", headers={"range": f"bytes={size - 3}-"})
        beyond = await http.get("/public", headers={"range": f"bytes={size}-"})
        compressed = await http.get(
            "/public", headers={"range": "bytes=0-9", "accept-encoding": "zstd, gzip"}
        )
    assert first.status_code == 206
    assert first.content == body[:10]
    assert first.headers["content-range"] == f"bytes 0-9/{size}"
    assert first.headers["x-cache"] == "HIT"
    assert "detail=range" in first.headers["cache-status"]
    assert suffix.content == body[-5:]
    assert suffix.headers["content-range"] == f"bytes {size - 5}-{size - 1}/{size}"
    assert open_ended.content == body[-3:]
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{size}"
    # A range is of the identity body, whatever the client accepts.
    assert compressed.content == body[:10]
    assert "content-encoding" not in compressed.headers
    assert served.state.calls["public"] == 1
    assert all(entry["range"] is None for entry in served.state.seen["public"])
    assert served.rc.statistics().ranges == 5


async def test_if_range_and_ranges_the_cache_does_not_answer(serve) -> None:
    served = serve()
    async with client(served) as http:
        miss = await http.get("/public", headers={"range": "bytes=0-9"})
        full = await http.get("/public")
        etag = full.headers["etag"]
        matching = await http.get("/public", headers={"range": "bytes=0-9", "if-range": etag})
        other = await http.get("/public", headers={"range": "bytes=0-9", "if-range": '"old"'})
        several = await http.get("/public", headers={"range": "bytes=0-1,5-6"})
    # Nothing stored yet: the app answers the range it was asked for (here: ignores it).
    assert miss.headers["x-cache"] == "BYPASS"
    assert served.state.seen["public"][0]["range"] == "bytes=0-9"
    assert matching.status_code == 206
    assert other.status_code == 200
    assert other.content == full.content
    assert several.headers["x-cache"] == "BYPASS"  # several ranges: the app's to answer
    assert served.state.calls["public"] == 3


# -- HEAD (§4.3.5) -------------------------------------------------------------------------


async def test_a_head_200_updates_the_stored_get_or_removes_it(serve, backend) -> None:
    served = serve(**backend())
    async with client(served) as http:
        await http.get("/validated")
        served.clock.advance(5)
        served.state.ignore_conditionals = True
        served.state.cache_control["validated"] = "max-age=60"
        head = await http.head("/validated")  # same ETag: updates the entry's fields
        fresh = await http.get("/validated")
        served.clock.advance(120)
        served.state.version = 2
        await http.head("/validated")  # another ETag: the stored GET is gone
        replaced = await http.get("/validated")
    assert head.status_code == 200
    assert head.content == b""
    assert served.state.seen["validated"][1]["if-none-match"] == '"v1"'
    assert fresh.headers["x-cache"] == "HIT"
    assert fresh.headers["cache-control"] == "max-age=60"
    assert replaced.headers["x-cache"] == "MISS"
    assert replaced.content == body_of("validated", 2)


# -- Vary (§4.1) ---------------------------------------------------------------------------


async def test_vary_values_are_normalised_and_invalidation_reaches_every_variant(
    serve, backend
) -> None:
    served = serve(**backend())
    async with client(served) as http:
        english = await http.get("/lang", headers={"accept-language": "EN-us ,  fr;q=0.5"})
        same = await http.get("/lang", headers={"accept-language": "en-US,fr;q=0.5"})
        german = await http.get("/lang", headers={"accept-language": "de"})
        removed = served.server.run_in_loop(served.rc.invalidate(url="/lang"))
        after = [
            await http.get("/lang", headers={"accept-language": value})
            for value in ("en-US,fr;q=0.5", "de")
        ]
    assert same.headers["x-cache"] == "HIT"
    assert same.content == english.content
    assert german.headers["x-cache"] == "MISS"
    assert removed == 3  # the marker and both variants
    assert [r.headers["x-cache"] for r in after] == ["MISS", "MISS"]


# -- transcode=False: the app's own coding --------------------------------------------------


async def test_transcode_off_keeps_the_apps_coding_and_vary(serve, backend) -> None:
    served = serve(transcode=False, **backend())
    async with client(served) as http:
        miss = await http.get("/coded", headers={"accept-encoding": "gzip"})
        hit = await http.get("/coded", headers={"accept-encoding": "gzip"})
        plain = await http.get("/coded", headers={"accept-encoding": "identity"})
        plain_hit = await http.get("/coded", headers={"accept-encoding": "identity"})
    for answer in (miss, hit):
        assert answer.headers["content-encoding"] == "gzip"
        assert answer.headers.get_list("vary") == ["Accept-Encoding"]
        assert answer.content == PAD.encode()  # httpx decoded the app's gzip
        assert answer.num_bytes_downloaded == len(GZIPPED)
    assert gzip.decompress(GZIPPED) == PAD.encode()
    assert hit.headers["x-cache"] == "HIT"
    assert plain_hit.headers["x-cache"] == "HIT"
    assert plain.content == plain_hit.content
    assert "content-encoding" not in plain_hit.headers
    assert served.state.calls["coded"] == 2


async def test_transcode_off_per_route(serve) -> None:
    served = serve()
    async with client(served) as http:
        answers = [await http.get("/raw", headers={"accept-encoding": "zstd, gzip"}) for _ in "ab"]
        owned = [await http.get("/public", headers={"accept-encoding": "zstd"}) for _ in "ab"]
    assert [a.headers["x-cache"] for a in answers] == ["MISS", "HIT"]
    for answer in answers:
        assert "content-encoding" not in answer.headers
        assert "vary" not in answer.headers
        assert answer.content == PAD.encode()
    assert owned[1].headers["content-encoding"] == "zstd"
    assert "accept-encoding" in owned[1].headers["vary"].lower()
