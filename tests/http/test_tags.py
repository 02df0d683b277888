"""A stored response's tags: one per path-segment prefix, its URL's, the app's own."""

from __future__ import annotations

import pytest

from asyncperf import Cache, MemoryStore
from asyncperf.http import ResponseCache
from asyncperf.http._keys import PREFIX_DEPTH
from asyncperf.http._types import NO_PARAMS, RequestView


def _expected(path: str, target: str) -> list[str]:
    """The rule, written out plainly: prefixes of the non-empty segments (at most
    PREFIX_DEPTH), and the URL's tag, which replaces the path's own when they name it."""
    segments = [segment for segment in path.split("/") if segment][:PREFIX_DEPTH]
    tags = ["p:/" + "/".join(segments[: n + 1]) for n in range(len(segments))]
    if tags and tags[-1][2:] == target:
        tags[-1] = "u:" + target
    else:
        tags.append("u:" + target)
    return tags


DEEP = "/" + "/".join(f"s{n}" for n in range(PREFIX_DEPTH + 4))
PATHS = [
    "/",
    "",
    "/items",
    "/items/",
    "/items/0",
    "/items/0/",
    "//items//0",
    "/a//b/",
    "items/0",
    DEEP,
    DEEP[: DEEP.index("/s16")],  # exactly PREFIX_DEPTH segments
    DEEP[: DEEP.index("/s15")],
    "/long/" + "x" * 300 + "/leaf",
    "/" + "/".join("p" for _ in range(3000)),  # thousands of segments: no recursion
]


@pytest.mark.parametrize("query", ["", "a=1"])
@pytest.mark.parametrize("path", PATHS)
def test_tags_follow_the_path_segments(path: str, query: str) -> None:
    rc = ResponseCache(Cache(MemoryStore()))
    request = RequestView("GET", "http", "t", path, query, {}, NO_PARAMS)
    target = path + ("?" + query if query else "")
    assert rc._tags(request, ("app",), None) == [*_expected(path, target), "t:app"]
