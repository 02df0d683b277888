"""Canonical requests: provider defaults filled in, one stable hash for the exact layer.

The key covers the whole request (model, every message with its role and content, tools,
response format, every sampling parameter). Parameters asyncperf does not know stay in the
key: an unknown parameter may change the answer, so dropping it could serve a wrong one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from .._exceptions import ConfigurationError

__all__ = [
    "OPENAI_CHAT_DEFAULTS",
    "CanonicalRequest",
    "canonical_request",
]

#: What the OpenAI chat completions API uses for a parameter the request leaves out. An
#: omitted ``temperature`` is 1, not 0: treating it as 0 would cache sampled answers.
OPENAI_CHAT_DEFAULTS: Final[Mapping[str, Any]] = {
    "frequency_penalty": 0,
    "logprobs": False,
    "n": 1,
    "presence_penalty": 0,
    "response_format": {"type": "text"},
    "stream": False,
    "temperature": 1,
    "top_p": 1,
}

# Defaults that only exist when tools are given.
_TOOL_DEFAULTS: Final[Mapping[str, Any]] = {"parallel_tool_calls": True, "tool_choice": "auto"}

_KEY_VERSION: Final = 1


def _plain(value: Any) -> Any:
    """Return ``value`` as JSON data: SDK models dumped, integral floats as ints, no ``None``
    in mappings (an explicit ``None`` means "the provider default", like omitting it)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return value
    if isinstance(value, float):
        # 0 and 0.0 (or 1 and 1.0) reach the provider as the same number.
        return int(value) if value.is_integer() else value
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return _plain(dump(mode="json", exclude_none=True))
    raise TypeError(
        f"LLM request values must be JSON data, got {type(value).__qualname__}: {value!r}"
    )


def _message(message: Any) -> dict[str, Any]:
    plain = _plain(message)
    if not isinstance(plain, dict) or "role" not in plain:
        raise ConfigurationError(f"each message needs a 'role', got {message!r}")
    content = plain.get("content")
    # One text part and the bare string are the same prompt to the provider.
    if (
        isinstance(content, list)
        and len(content) == 1
        and isinstance(content[0], dict)
        and content[0].get("type") == "text"
        and set(content[0]) == {"type", "text"}
        and isinstance(content[0].get("text"), str)
    ):
        plain["content"] = content[0]["text"]
    return plain


@dataclass(frozen=True, slots=True)
class CanonicalRequest:
    """A request in canonical form, with what the cache derives from it.

    Attributes:
        body: The request with provider defaults filled in, as JSON data.
        digest: Hex BLAKE2b-256 of the sorted-key JSON of ``body``: the exact-layer key.
        deterministic: The temperature (after defaults) is 0.
        model: The requested model.
        scope: For requests whose last message is a plain-text user message: the digest of
            everything but that message's text (model, parameters, tools, system prompt,
            earlier turns). Only requests with the same scope are compared by similarity.
        prompt: That last user message's text (``None`` when ``scope`` is ``None``).
    """

    body: dict[str, Any]
    digest: str
    deterministic: bool
    model: str
    scope: str | None
    prompt: str | None


def _digest(data: Any) -> str:
    encoded = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(encoded, digest_size=32).hexdigest()


def canonical_request(
    request: Mapping[str, Any],
    *,
    defaults: Mapping[str, Any] = OPENAI_CHAT_DEFAULTS,
    ignore: Iterable[str] = (),
) -> CanonicalRequest:
    """Return the canonical form of an OpenAI-style chat request.

    Args:
        request: ``model``, ``messages`` and any parameters.
        defaults: The provider's value for each parameter a request may leave out.
        ignore: Parameters to leave out of the key (the caller vouches that they never
            change the answer, e.g. ``user``).

    Raises:
        TypeError: ``request`` is not a mapping, or holds a value that is not JSON data.
        ConfigurationError: ``model`` or ``messages`` is missing or malformed.
    """
    if not isinstance(request, Mapping):
        raise TypeError(f"request must be a mapping, got {type(request).__qualname__}")
    model = request.get("model")
    if not isinstance(model, str) or not model:
        raise ConfigurationError(f"request needs a 'model' string, got {model!r}")
    messages = request.get("messages")
    if not isinstance(messages, list | tuple) or not messages:
        raise ConfigurationError("request needs a non-empty 'messages' list")
    skip = frozenset(ignore)
    body: dict[str, Any] = {}
    for name, value in request.items():
        if name in skip or value is None:
            continue
        body[str(name)] = [_message(m) for m in messages] if name == "messages" else _plain(value)
    for name, value in defaults.items():
        if name not in skip:
            body.setdefault(name, _plain(value))
    if body.get("tools"):
        for name, value in _TOOL_DEFAULTS.items():
            if name not in skip:
                body.setdefault(name, value)
    temperature = body.get("temperature", 1)
    deterministic = isinstance(temperature, int | float) and temperature == 0
    digest = _digest({"v": _KEY_VERSION, "request": body})
    scope: str | None = None
    prompt: str | None = None
    last = body["messages"][-1]
    if last.get("role") == "user" and isinstance(last.get("content"), str) and len(last) == 2:
        prompt = last["content"]
        # Scoping happens before any search: everything except the last user text.
        scope = _digest({"v": _KEY_VERSION, "scope": {**body, "messages": body["messages"][:-1]}})
    return CanonicalRequest(body, digest, deterministic, model, scope, prompt)
