"""``cached_select``: SQLAlchemy Core and ORM selects cached like :func:`cached_fetch`.

The statement is compiled for the engine's dialect (postgresql+asyncpg); the key is the
database and search path, the compiled SQL and its bound parameters; the tags are the
tables the compiled SQL reads (views expanded), so the triggers and LISTEN/NOTIFY of
:func:`setup_invalidation` drop the rows when one of them changes. Only a miss touches
the session or connection.
"""

from __future__ import annotations

import sys
import weakref
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from .._exceptions import ConfigurationError
from ..cache import Cache, get_default_cache
from ._cached import _key, _lookup, _remember, _tags, _Target, _target, _through_cache
from ._engine import check_engine

__all__ = ["cached_select"]

_COMPILED_PER_DIALECT = 500

# Compiled statements by SQLAlchemy's own cache key, per dialect: compiling a select
# costs about as much as running a cheap one, which a cache hit must not pay.
_compiled: weakref.WeakKeyDictionary[Any, OrderedDict[Any, Any]] = weakref.WeakKeyDictionary()


def _compile(
    statement: Any, dialect: Any, params: Mapping[str, Any] | None
) -> tuple[str, dict[str, Any]]:
    """``(SQL, bound parameters)`` of ``statement`` for ``dialect``, compiled once per shape.

    Uses the cache key SQLAlchemy computes for its own compiled cache
    (``_generate_cache_key``: the statement's shape, plus the values it extracted); a
    statement without one is compiled every time.
    """
    given = dict(params) if params else None
    generate = getattr(statement, "_generate_cache_key", None)
    cache_key = generate() if generate is not None else None
    if cache_key is None:
        compiled = statement.compile(dialect=dialect)
        return str(compiled), compiled.construct_params(given)
    by_key = _compiled.get(dialect)
    if by_key is None:
        by_key = _compiled.setdefault(dialect, OrderedDict())
    compiled = by_key.get(cache_key.key)
    if compiled is None:
        compiled = statement.compile(dialect=dialect, cache_key=cache_key)
        by_key[cache_key.key] = compiled
        if len(by_key) > _COMPILED_PER_DIALECT:
            by_key.popitem(last=False)
    else:
        by_key.move_to_end(cache_key.key)
    bound = compiled.construct_params(given, extracted_parameters=cache_key.bindparams)
    return str(compiled), bound


def _engine_of(executor: Any) -> Any:
    """The ``AsyncEngine`` an ``AsyncSession`` or ``AsyncConnection`` runs on."""
    module = sys.modules.get("sqlalchemy.ext.asyncio")
    if module is not None and isinstance(executor, module.AsyncConnection):
        return executor.engine
    if module is not None and isinstance(executor, module.AsyncSession):
        if executor.bind is None:
            raise ConfigurationError(
                "cached_select needs an AsyncSession bound to one AsyncEngine "
                "(AsyncSession(engine) or async_sessionmaker(engine))"
            )
        return executor.bind
    raise ConfigurationError(
        "cached_select runs through a SQLAlchemy AsyncSession or AsyncConnection, got "
        f"{type(executor).__name__} (for an asyncpg pool or an AsyncEngine with SQL text, "
        "use cached_fetch)"
    )


def _plain(value: Any) -> tuple[bool, Any]:
    """``(True, its loaded column attributes)`` for an ORM instance, else ``(False, value)``.

    Only what is loaded is read (``state.dict``): a deferred or expired column would need
    IO, which an async session cannot do implicitly.
    """
    from sqlalchemy import inspect

    state = inspect(value, raiseerr=False)
    mapper = getattr(state, "mapper", None)
    if mapper is None or not hasattr(state, "dict"):
        return False, value
    loaded = state.dict
    return True, {a.key: loaded[a.key] for a in mapper.column_attrs if a.key in loaded}


def _rows(result: Any) -> list[dict[str, Any]]:
    keys = list(result.keys())
    rows: list[dict[str, Any]] = []
    for row in result.all():
        values = [_plain(v) for v in row]
        if len(values) == 1 and values[0][0]:
            rows.append(values[0][1])  # select(User): the row is the user's columns
        else:
            rows.append({k: v for k, (_, v) in zip(keys, values, strict=True)})
    return rows


async def cached_select(
    executor: Any,
    statement: Any,
    params: Mapping[str, Any] | None = None,
    *,
    ttl: float | None = 60.0,
    cache: Cache | None = None,
    lock: Any = "local",
) -> list[dict[str, Any]]:
    """Run a SQLAlchemy ``select()`` through ``executor`` and cache its rows.

    Rows come back as dicts, from the database and from the cache alike: a Core select
    gives ``{column label: value}`` (``result.mappings()``); ``select(User)`` gives one
    dict per user of its loaded column attributes (``{"id": 1, "name": ...}``: no
    relationships, no identity in the session); a mixed select such as
    ``select(User, func.count())`` gives ``{"User": {...}, "count": 3}``. Values are those
    SQLAlchemy's types produced (an ``Enum`` column's members, for instance).

    The key is the engine's database and search path, the statement compiled for the
    postgresql+asyncpg dialect, and its bound parameters (type-tagged, as
    :func:`cached_fetch` tags its arguments). The tags are the tables read, views
    expanded to their base tables: :func:`setup_invalidation` on the same cache drops
    the rows on any write to them. Run it outside transactions that have written:
    rows read there (your own uncommitted writes, autoflushed ones included) would be
    cached for everyone.

    Args:
        executor: An ``AsyncSession`` (bound to an ``AsyncEngine``) or an
            ``AsyncConnection``; it runs the select on a miss.
        statement: A ``select()`` (Core or ORM); no ``FOR UPDATE``.
        params: Values for ``bindparam()``\\ s without one (part of the key).
        ttl: Seconds the rows stay fresh (``None``: the cache's default).
        cache: The cache (default: asyncperf's default in-memory cache).
        lock: ``Cache.get_or_set``'s single-flight mode.

    Raises:
        ConfigurationError: Not a select, not a session or connection, or an engine that
            is not postgresql+asyncpg.
    """
    if not getattr(statement, "is_select", False):
        raise ConfigurationError(
            f"cached_select caches select() statements only, got {type(statement).__name__}"
        )
    engine = _engine_of(executor)
    check_engine(engine)
    cache = cache if cache is not None else get_default_cache()
    sql, bound = _compile(statement, engine.dialect, params)
    arguments = sorted(bound.items())
    target = _lookup(engine.sync_engine)
    tags = target.tags.get(sql) if target is not None else None
    if target is None or tags is None:
        target, tags = await _resolve(executor, engine, statement, sql)
    key = _key(target.key, sql, [["select", *arguments]])

    async def fetch() -> list[dict[str, Any]]:
        return _rows(await executor.execute(statement, params))

    return await _through_cache(cache, key, tags, fetch, ttl, lock)


async def _resolve(
    executor: Any, engine: Any, statement: Any, sql: str
) -> tuple[_Target, tuple[str, ...]]:
    """Resolve the search path and the tables on ``executor``'s own connection."""
    module = sys.modules["sqlalchemy.ext.asyncio"]
    if isinstance(executor, module.AsyncSession):
        conn = await executor.connection()
    else:
        conn = executor
    raw = (await conn.get_raw_connection()).driver_connection
    target = await _target(engine.sync_engine, raw)
    expanded = str(
        statement.compile(dialect=engine.dialect, compile_kwargs={"render_postcompile": True})
    )
    tags = await _tags(raw, target, expanded)
    target.tags[sql] = tags  # keyed by the statement's own text too
    if target is not _lookup(engine.sync_engine):
        _remember(engine.sync_engine, target)
    return target, tags
