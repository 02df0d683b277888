"""Behaviour of the response cache through real servers (uvicorn and aiohttp's TestServer)
driven by httpx, the same assertions for both frameworks."""

from __future__ import annotations

import gzip
import json
from collections.abc import Awaitable

import anyio
import brotli
import httpx
import pytest
import zstandard

from ._apps import BIG, STREAM_CHUNKS, body_of

pytestmark = pytest.mark.anyio


def client(served) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=served.base_url, timeout=10.0)


async def gather(*requests: Awaitable[httpx.Response]) -> list[httpx.Response]:
    """Send ``requests`` at once (asyncio or trio); their responses in order."""
    responses: list[httpx.Response | None] = [None] * len(requests)

    async def one(index: int, request: Awaitable[httpx.Response]) -> None:
        responses[index] = await request

    async with anyio.create_task_group() as group:
        for index, request in enumerate(requests):
            group.start_soon(one, index, request)
    return [response for response in responses if response is not None]


async def test_second_get_is_a_hit_with_age_and_one_date(serve) -> None:
    served = serve()
    async with client(served) as http:
        first = await http.get("/public")
        served.clock.advance(5)
        second = await http.get("/public")
    assert first.headers["x-cache"] == "MISS"
    assert second.headers["x-cache"] == "HIT"
    assert second.content == first.content == body_of("public", 1)
    assert second.headers["age"] == "5"
    assert "age" not in first.headers
    assert second.headers.get_list("date").__len__() <= 1
    assert second.headers["cache-control"] == "max-age=60"
    assert "accept-encoding" in second.headers["vary"].lower()
    assert served.state.calls["public"] == 1
    assert "hit" in second.headers["cache-status"]


async def test_two_users_with_authorization_never_share(serve) -> None:
    served = serve(default_ttl=60)
    async with client(served) as http:
        alice = [await http.get("/me", headers={"authorization": "Bearer alice"}) for _ in range(2)]
        bob = [await http.get("/me", headers={"authorization": "Bearer bob"}) for _ in range(2)]
        anonymous = await http.get("/me")
        anonymous_again = await http.get("/me")
    assert all(b"Bearer alice" in r.content for r in alice)
    assert all(b"Bearer bob" in r.content for r in bob)
    assert all(r.headers["x-cache"] == "MISS" for r in alice + bob)
    # Without Authorization the default TTL applies; the users' bodies never show up.
    assert b"anonymous" in anonymous.content
    assert anonymous_again.headers["x-cache"] == "HIT"
    assert served.state.calls["me"] == 5


async def test_authorized_response_marked_public_may_be_shared(serve) -> None:
    served = serve()
    async with client(served) as http:
        # /public says max-age only: an Authorization request never reuses or stores it.
        first = await http.get("/public", headers={"authorization": "Bearer a"})
        second = await http.get("/public", headers={"authorization": "Bearer b"})
    assert [first.headers["x-cache"], second.headers["x-cache"]] == ["MISS", "MISS"]
    assert served.state.calls["public"] == 2


async def test_set_cookie_responses_are_not_shared(serve) -> None:
    served = serve()
    async with client(served) as http:
        first = await http.get("/cookie")
        http.cookies.clear()
        second = await http.get("/cookie")
    assert "sid=secret-of-first-user" in first.headers["set-cookie"]
    assert second.headers["x-cache"] == "MISS"
    assert served.state.calls["cookie"] == 2


async def test_set_cookie_opt_in_stores_without_the_cookie(serve) -> None:
    served = serve(store_set_cookie=True)
    async with client(served) as http:
        first = await http.get("/cookie")
        http.cookies.clear()
        second = await http.get("/cookie")
    assert "sid=secret-of-first-user" in first.headers["set-cookie"]
    assert second.headers["x-cache"] == "HIT"
    assert "set-cookie" not in second.headers
    assert served.state.calls["cookie"] == 1


async def test_vary_splits_entries(serve) -> None:
    served = serve()
    async with client(served) as http:
        en = await http.get("/vary", headers={"x-lang": "en"})
        fr = await http.get("/vary", headers={"x-lang": "fr"})
        en_again = await http.get("/vary", headers={"x-lang": "en"})
        fr_again = await http.get("/vary", headers={"x-lang": "fr"})
        none = await http.get("/vary")
    assert b'"extra": "en"' in en.content
    assert en_again.content == en.content
    assert b'"extra": "fr"' in fr.content
    assert fr_again.content == fr.content
    assert [r.headers["x-cache"] for r in (en, fr, en_again, fr_again, none)] == [
        "MISS",
        "MISS",
        "HIT",
        "HIT",
        "MISS",
    ]
    vary = ",".join(en_again.headers.get_list("vary")).lower()
    assert "x-lang" in vary
    assert "accept-encoding" in vary
    assert served.state.calls["vary"] == 3


@pytest.mark.parametrize("accept", ["zstd", "gzip", "br", "identity"])
async def test_304_carries_the_headers_rfc_9110_requires(serve, accept: str) -> None:
    served = serve()
    headers = {"accept-encoding": accept}
    async with client(served) as http:
        miss = await http.get("/public", headers=headers)  # small: sent as the app made it
        plain_etag = miss.headers["etag"]
        first_hit = await http.get("/public", headers=headers)
        etag = first_hit.headers["etag"]
        on_miss = await http.get("/small", headers={"if-none-match": "*"})
        hit = await http.get("/public", headers={**headers, "if-none-match": etag})
        weak = await http.get("/public", headers={**headers, "if-none-match": f'"nope", W/{etag}'})
        # The client holds the miss's identity copy: still current, so 304 with its tag.
        held = await http.get("/public", headers={**headers, "if-none-match": plain_etag})
        other = await http.get("/public", headers={**headers, "if-none-match": '"nope"'})
    assert "content-encoding" not in miss.headers
    for tag in (plain_etag, etag):
        assert tag.startswith('"')
        assert not tag.startswith("W/")
    if accept != "identity":
        assert etag.endswith(f'-{accept}"')  # a validator per content coding
        assert etag != plain_etag
    for response, sent in ((hit, etag), (weak, etag), (held, plain_etag)):
        assert response.status_code == 304
        assert response.content == b""
        assert response.headers["etag"] == sent
        assert response.headers["cache-control"] == "max-age=60"
        assert "accept-encoding" in response.headers["vary"].lower()
        assert "content-type" not in response.headers
        assert "content-encoding" not in response.headers
        assert "age" in response.headers
    # "*" matches any current representation, also on a miss the middleware buffered.
    assert on_miss.status_code == 304
    assert on_miss.headers["x-cache"] == "MISS"
    assert other.status_code == 200
    assert other.content == body_of("public", 1)
    assert served.rc.statistics().not_modified == 4


async def test_conditional_on_uncached_response_and_if_modified_since(serve) -> None:
    served = serve()
    async with client(served) as http:
        private = await http.get("/private", headers={"accept-encoding": "identity"})
        private_304 = await http.get(
            "/private",
            headers={"accept-encoding": "identity", "if-none-match": private.headers["etag"]},
        )
        first = await http.get("/etag", headers={"accept-encoding": "identity"})
        since = await http.get(
            "/etag",
            headers={
                "accept-encoding": "identity",
                "if-modified-since": "Wed, 02 Jul 2025 00:00:00 GMT",
            },
        )
        before = await http.get(
            "/etag",
            headers={
                "accept-encoding": "identity",
                "if-modified-since": "Mon, 30 Jun 2025 00:00:00 GMT",
            },
        )
    assert private.headers["x-cache"] == "MISS"
    assert private_304.status_code == 304
    assert served.state.calls["private"] == 2  # never stored, still answered with 304
    assert first.headers["etag"] == '"v1"'  # the app's own validator is kept
    assert since.status_code == 304
    assert since.headers["etag"] == '"v1"'
    assert before.status_code == 200


async def test_request_no_cache_revalidates_with_the_apps_validator(serve) -> None:
    served = serve()
    async with client(served) as http:
        await http.get("/etag")
        again = await http.get("/etag", headers={"cache-control": "no-cache"})
        max_age_zero = await http.get("/etag", headers={"cache-control": "max-age=0"})
    # The app answered 304 to our If-None-Match: the client gets the stored 200.
    assert again.status_code == 200
    assert max_age_zero.status_code == 200
    assert again.content == body_of("etag", 1)
    assert "fwd-status=304" in again.headers["cache-status"]
    assert served.state.calls["etag"] == 3
    assert served.rc.statistics().revalidations == 2


async def test_stale_while_revalidate_serves_stale_once_and_refreshes_once(serve) -> None:
    served = serve()
    async with client(served) as http:
        first = await http.get("/swr")
        served.clock.advance(5)  # past max-age=1, inside stale-while-revalidate=30
        stale = await http.get("/swr")
        fresh = await http.get("/swr")
    assert first.content == body_of("swr", 1)
    assert stale.headers["x-cache"] == "STALE"
    assert stale.content == body_of("swr", 1)
    assert stale.headers["age"] == "5"
    assert fresh.headers["x-cache"] == "HIT"
    assert fresh.content == body_of("swr", 2)
    assert served.state.calls["swr"] == 2
    stats = served.rc.statistics()
    assert (stats.stale, stats.revalidations, stats.errors) == (1, 1, 0)


async def test_past_the_swr_window_the_client_waits_for_the_app(serve) -> None:
    served = serve()
    async with client(served) as http:
        await http.get("/swr")
        served.clock.advance(100)
        late = await http.get("/swr")
    assert late.headers["x-cache"] == "MISS"
    assert late.content == body_of("swr", 2)


async def test_stale_if_error_replaces_a_503(serve) -> None:
    served = serve()
    async with client(served) as http:
        await http.get("/sie")
        served.clock.advance(10)
        served.state.fail = True
        stale = await http.get("/sie")
        served.clock.advance(100)  # past stale-if-error=60
        error = await http.get("/sie")
    assert stale.status_code == 200
    assert stale.headers["x-cache"] == "STALE"
    assert stale.content == body_of("sie", 1)
    assert error.status_code == 503


@pytest.mark.parametrize("accept", ["zstd", "gzip", "br", "identity", "*", ""])
@pytest.mark.parametrize("miss_compress_size", [None, 0, 16 << 10])
async def test_encodings_decode_to_the_original_body(
    serve, accept: str, miss_compress_size: int | None
) -> None:
    served = serve(miss_compress_size=miss_compress_size)
    original = body_of("public", 1)
    for attempt in ("miss", "hit"):
        async with client(served) as http:
            request = http.build_request("GET", "/public", headers={"accept-encoding": accept})
            response = await http.send(request, stream=True)
            raw = b"".join([chunk async for chunk in response.aiter_raw()])
            await response.aclose()
        assert response.headers["x-cache"] == attempt.upper()
        coding = response.headers.get("content-encoding", "identity")
        expected = {"zstd": "zstd", "gzip": "gzip", "br": "br", "*": "zstd"}.get(accept, "identity")
        if attempt == "miss" and miss_compress_size != 0:
            expected = "identity"  # a small body from the app goes out as the app made it
        assert coding == expected, attempt
        decoded = {
            "zstd": lambda data: zstandard.ZstdDecompressor().decompress(data),
            "gzip": gzip.decompress,
            "br": brotli.decompress,
            "identity": lambda data: data,
        }[coding](raw)
        assert decoded == original, attempt
        assert int(response.headers["content-length"]) == len(raw)
        if coding != "identity":
            assert len(raw) < len(original)


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("gzip;q=0.5, br;q=0.9", "br"),
        ("zstd;q=0, gzip", "gzip"),
        ("gzip;q=0.2, identity;q=0.5", "identity"),
        ("*;q=0, identity;q=0, zstd;q=0", "identity"),
        ("deflate", "identity"),
        ("GZIP", "gzip"),
    ],
)
async def test_accept_encoding_q_values(serve, accept: str, expected: str) -> None:
    served = serve()
    async with client(served) as http:
        await http.get("/public")
        response = await http.get("/public", headers={"accept-encoding": accept})
    assert response.headers.get("content-encoding", "identity") == expected
    assert json.loads(response.content)["n"] == 1


async def test_unsafe_method_invalidates_uri_and_content_location(serve) -> None:
    served = serve()
    async with client(served) as http:
        await http.get("/public")
        await http.get("/items/7")
        posted = await http.post("/public", content=b"payload")
        after_post = await http.get("/public")
        put = await http.put("/items/7")
        after_put = await http.get("/items/7")
    assert posted.status_code == 201
    assert posted.headers["x-cache"] == "BYPASS"
    assert served.state.bodies == [b"payload"]  # the request body reached the app
    assert after_post.headers["x-cache"] == "MISS"
    assert put.status_code == 204
    assert after_put.headers["x-cache"] == "MISS"
    assert served.state.calls["public"] == 2
    assert served.state.calls["item"] == 2


async def test_invalidate_by_url_prefix_and_tags(serve) -> None:
    served = serve()
    run = served.server.run_in_loop
    async with client(served) as http:

        async def status(path: str) -> str:
            return (await http.get(path)).headers["x-cache"]

        for path in ("/public", "/items/1", "/items/2", "/items/1?full=1", "/tagged"):
            await http.get(path)
        assert run(served.rc.invalidate(url="/items/1?full=1")) == 1
        assert await status("/items/1?full=1") == "MISS"
        assert await status("/items/1") == "HIT"
        assert run(served.rc.invalidate(tags=["item:2"])) == 1  # route tag template
        assert await status("/items/2") == "MISS"
        assert run(served.rc.invalidate(prefix="/items")) >= 3
        assert [await status(p) for p in ("/items/1", "/items/2", "/public")] == [
            "MISS",
            "MISS",
            "HIT",
        ]
        response = await http.get("/tagged")
        assert "cache-tag" not in response.headers  # stripped before delivery
        assert run(served.rc.invalidate(tags=["reports"])) == 1
        assert await status("/tagged") == "MISS"
        assert run(served.rc.invalidate(url=f"{served.base_url}/public")) == 1
        assert await status("/public") == "MISS"


@pytest.mark.parametrize("route", ["private", "nostore", "error", "opted-out"])
async def test_not_stored(serve, route: str) -> None:
    served = serve(default_ttl=60)
    async with client(served) as http:
        responses = [await http.get(f"/{route}") for _ in range(2)]
    assert served.state.calls[route] == 2
    assert responses[1].headers["x-cache"] in ("MISS", "BYPASS")


async def test_opted_out_routes_count_as_bypasses_not_misses(serve) -> None:
    served = serve(default_ttl=60)
    async with client(served) as http:
        responses = [await http.get("/opted-out") for _ in range(3)]
    assert [r.headers["x-cache"] for r in responses] == ["BYPASS"] * 3
    stats = served.rc.statistics()
    assert stats.bypasses == 3
    assert stats.misses == 0


async def test_default_ttl_does_not_change_cache_control_downstream(serve) -> None:
    served = serve(default_ttl=60)
    async with client(served) as http:
        first = await http.get("/me")
        second = await http.get("/me")
    assert second.headers["x-cache"] == "HIT"
    assert "cache-control" not in first.headers
    assert "cache-control" not in second.headers


async def test_large_body_passes_through_unstored(serve) -> None:
    served = serve()
    async with client(served) as http:
        responses = [await http.get("/big") for _ in range(2)]
    assert all(r.content == BIG for r in responses)
    assert served.state.calls["big"] == 2
    assert "etag" not in responses[0].headers


async def test_streamed_response_reaches_the_client_untouched(serve, framework: str) -> None:
    served = serve()
    async with client(served) as http:
        first = await http.get("/stream", headers={"accept-encoding": "identity"})
        second = await http.get("/stream", headers={"accept-encoding": "identity"})
    assert first.content == second.content == b"".join(STREAM_CHUNKS)
    if framework == "starlette":
        assert first.headers["x-cache"] == "MISS"
        # Small enough: teed into the cache while streaming, then a hit.
        assert second.headers["x-cache"] == "HIT"
        assert served.state.calls["stream"] == 1
    else:
        # aiohttp StreamResponse writes straight to the socket: passed through.
        assert served.state.calls["stream"] == 2


async def test_head_is_served_from_the_get_entry(serve) -> None:
    served = serve()
    async with client(served) as http:
        get = await http.get("/public", headers={"accept-encoding": "identity"})
        head = await http.head("/public", headers={"accept-encoding": "identity"})
    assert head.headers["x-cache"] == "HIT"
    assert head.content == b""
    assert head.headers["content-length"] == str(len(get.content))
    assert head.headers["etag"] == get.headers["etag"]
    assert served.state.calls["public"] == 1


async def test_statistics_count_what_happened(serve) -> None:
    served = serve(status_header="X-Asyncperf")
    async with client(served) as http:
        first = await http.get("/public", headers={"accept-encoding": "zstd"})
        second = await http.get("/public", headers={"accept-encoding": "gzip"})
        await http.get(
            "/public", headers={"if-none-match": second.headers["etag"], "accept-encoding": "gzip"}
        )
        await http.post("/public")
    assert first.headers["x-asyncperf"] == "MISS"
    assert "x-cache" not in first.headers
    stats = served.rc.statistics()
    assert (stats.hits, stats.misses, stats.stores, stats.not_modified) == (2, 1, 1, 1)
    assert stats.bypasses == 1
    assert stats.invalidations == 1
    assert stats.bytes_served > 0  # the gzip hit (the 304 has no body)
    # The small miss went out as the app made it; the gzip hit sent far less than that.
    assert len(body_of("public", 1)) // 2 < stats.bytes_saved < len(body_of("public", 1))
    assert 0 < stats.hit_rate < 1


async def test_only_if_cached_answers_504_on_a_miss(serve) -> None:
    served = serve()
    async with client(served) as http:
        miss = await http.get("/public", headers={"cache-control": "only-if-cached"})
        await http.get("/public")
        hit = await http.get("/public", headers={"cache-control": "only-if-cached"})
    assert miss.status_code == 504
    assert hit.status_code == 200


async def test_concurrent_misses_for_one_url_ask_the_app_once(serve) -> None:
    served = serve()
    async with client(served) as http:
        responses = await gather(*(http.get("/slow") for _ in range(10)))
    assert served.state.calls["slow"] == 1
    assert {response.content for response in responses} == {body_of("slow", 1)}
    labels = sorted(response.headers["x-cache"] for response in responses)
    assert labels == ["HIT"] * 9 + ["MISS"]
    stats = served.rc.statistics()
    assert (stats.misses, stats.hits, stats.coalesced, stats.stores) == (1, 9, 9, 1)


async def test_uncacheable_urls_stop_being_coalesced(serve) -> None:
    served = serve()
    async with client(served) as http:
        first = await gather(*(http.get("/slow-nostore") for _ in range(5)))
        # The first burst learnt the response is not stored: the next one is not queued
        # behind a leader, all five reach the app together.
        served.state.most_inflight.clear()
        second = await gather(*(http.get("/slow-nostore") for _ in range(5)))
    assert all(response.status_code == 200 for response in first + second)
    assert served.state.calls["slow-nostore"] == 10
    assert served.state.most_inflight["slow-nostore"] == 5
    assert served.rc.statistics().coalesced == 0


async def test_coalescing_can_be_turned_off(serve) -> None:
    served = serve(coalesce=False)
    async with client(served) as http:
        await gather(*(http.get("/slow") for _ in range(4)))
    assert served.state.calls["slow"] == 4
    assert served.state.most_inflight["slow"] == 4
