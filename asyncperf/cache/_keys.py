"""Key checks, hashing of long keys, and stable keys for function calls."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import hashlib
import inspect
import math
import types
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Final

from .._exceptions import ConfigurationError

__all__ = ["MAX_KEY_LENGTH", "CallKeyBuilder", "canonical", "check_key", "hash_long_key"]

MAX_KEY_LENGTH: Final = 200
_KEEP: Final = 64


def hash_long_key(key: str) -> str:
    """Shorten a key over :data:`MAX_KEY_LENGTH` characters, deterministically.

    The result keeps the first 64 characters (so keys stay readable in Redis) followed by
    ``"#"`` and the 40-hex-digit BLAKE2b-160 digest of the whole key.
    """
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=20).hexdigest()
    return f"{key[:_KEEP]}#{digest}"


def check_key(key: object) -> str:
    """Return ``key`` ready for a store: a ``str``, hashed when over-long.

    Raises:
        TypeError: ``key`` is not a ``str``.
    """
    if type(key) is not str:
        if isinstance(key, str):  # a str subclass: use its plain value
            key = str.__str__(key)
        else:
            raise TypeError(f"cache keys must be str, got {type(key).__qualname__}: {key!r}")
    assert isinstance(key, str)
    return hash_long_key(key) if len(key) > MAX_KEY_LENGTH else key


def canonical(value: Any) -> str:
    """Return a text form of ``value`` that is the same in every process.

    Built-in scalars and containers, dates, UUIDs, decimals, enums and dataclasses are
    supported; sets and dict items are sorted so their order does not matter. Other objects
    need a ``__cache_key__()`` method returning a string, or a custom ``__repr__``.

    Raises:
        TypeError: No stable form exists (an object whose repr shows its memory address).
    """
    kind = type(value)
    if value is None or kind is bool or kind is int or kind is str:
        return repr(value)
    if kind is float:
        return repr(value) if math.isfinite(value) else f"float('{value}')"
    if kind is tuple or kind is list:
        open_, close = ("(", ")") if kind is tuple else ("[", "]")
        return open_ + ",".join(canonical(item) for item in value) + close
    if kind is dict or isinstance(value, Mapping):
        items = sorted((canonical(k), canonical(v)) for k, v in value.items())
        return "{" + ",".join(f"{k}:{v}" for k, v in items) + "}"
    if kind is set or kind is frozenset:
        # Not "{...}": an empty set must not read like an empty dict.
        return f"{kind.__name__}(" + ",".join(sorted(canonical(item) for item in value)) + ")"
    if kind is bytes:
        return repr(value)
    if isinstance(value, enum.Enum):
        return f"{kind.__qualname__}.{value.name}"
    if isinstance(value, datetime.date | datetime.time | uuid.UUID | decimal.Decimal):
        return f"{kind.__name__}({value.isoformat() if hasattr(value, 'isoformat') else value})"
    custom = getattr(value, "__cache_key__", None)
    if custom is not None and not isinstance(value, type):
        return f"{kind.__qualname__}({custom()})"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = ",".join(
            f"{f.name}={canonical(getattr(value, f.name))}" for f in dataclasses.fields(value)
        )
        return f"{kind.__qualname__}({fields})"
    for base in kind.__mro__:  # subclasses of builtins: their builtin value
        if base in _BUILTIN_BASES:
            return canonical(base(value))
    if isinstance(value, type | types.FunctionType | types.BuiltinFunctionType):
        name = getattr(value, "__qualname__", "")
        if "<" not in name:  # not a lambda, not a local: the name is stable
            return f"{getattr(value, '__module__', '?')}.{name}"
    elif kind.__repr__ is not object.__repr__:  # type: ignore[comparison-overlap]
        text = repr(value)
        if " at 0x" not in text:
            return text
    raise TypeError(
        f"cannot build a stable cache key from a {kind.__qualname__} (its repr shows a memory "
        "address): give the class a __cache_key__() method or pass key= to @cached"
    )


_BUILTIN_BASES: Final = (str, int, float, tuple, list, dict, bytes)


class CallKeyBuilder:
    """Build stable keys for calls of one function: ``module:qualname(a=1,b='x')``.

    Arguments are bound to parameter names with defaults applied, so ``f(1)``, ``f(a=1)``
    and ``f(1, b=default)`` share a key. ``self``/``cls`` are left out for methods.
    """

    __slots__ = (
        "_defaults",
        "_fast",
        "_names",
        "_prefix",
        "_signature",
        "_skip_first",
        "template",
    )

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        template: str | None = None,
        skip_first: bool | None = None,
    ) -> None:
        self._signature = inspect.signature(func)
        params = list(self._signature.parameters.values())
        if skip_first is None:
            # A function defined in a class body (qualname "Class.name", not
            # "outer.<locals>.name") whose first parameter is self or cls is a method.
            qualname = getattr(func, "__qualname__", "")
            in_class = "." in qualname and qualname.rsplit(".", 2)[-2] != "<locals>"
            skip_first = in_class and bool(params) and params[0].name in ("self", "cls")
        self._skip_first = skip_first
        self._names = tuple(p.name for p in params)
        self._defaults = {p.name: p.default for p in params if p.default is not p.empty}
        simple = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        # Calls with positional arguments only, to a function without *args/**kwargs, are
        # bound by zipping names (10x cheaper than Signature.bind on the hot path).
        self._fast = all(p.kind in simple for p in params)
        module = getattr(func, "__module__", None) or "?"
        self._prefix = f"{module}:{getattr(func, '__qualname__', repr(func))}"
        self.template = template
        if template is not None:
            self._check_template(template)

    def _check_template(self, template: str) -> None:
        import string

        for _, field, _, _ in string.Formatter().parse(template):
            if field is None:
                continue
            root = field.split(".", 1)[0].split("[", 1)[0]
            if root not in self._names:
                raise ConfigurationError(
                    f"key template {template!r} names {root!r}, which is not a parameter of "
                    f"{self._prefix} (parameters: {', '.join(self._names)})"
                )

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Return the call's arguments by parameter name, defaults filled in."""
        if self._fast and not kwargs and len(args) <= len(self._names):
            bound = dict(zip(self._names, args, strict=False))
            if len(args) < len(self._names):
                for name in self._names[len(args) :]:
                    if name not in self._defaults:
                        break
                    bound[name] = self._defaults[name]
                else:
                    return bound
            else:
                return bound
        ba = self._signature.bind(*args, **kwargs)
        ba.apply_defaults()
        return dict(ba.arguments)

    def key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """Return the key for a call with ``args`` and ``kwargs``."""
        return self.key_from(self.bind(args, kwargs))

    def key_from(self, bound: dict[str, Any]) -> str:
        """Return the key for already-bound arguments (see :meth:`bind`)."""
        if self.template is not None:
            return self.template.format(**bound)
        items = iter(bound.items())
        if self._skip_first:
            next(items, None)
        parts: list[str] = []
        for name, value in items:
            kind = self._signature.parameters[name].kind
            if kind is inspect.Parameter.VAR_KEYWORD:
                parts.extend(f"{k}={canonical(v)}" for k, v in sorted(value.items()))
            elif kind is inspect.Parameter.VAR_POSITIONAL:
                parts.append(f"*{canonical(value)}")
            else:
                parts.append(f"{name}={canonical(value)}")
        return f"{self._prefix}({','.join(parts)})"
