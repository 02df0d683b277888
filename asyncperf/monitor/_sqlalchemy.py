"""SQLAlchemy statement timing through engine events, into the monitor's query metrics."""

from __future__ import annotations

import time
import weakref
from typing import Any

from .._exceptions import ConfigurationError
from ._queries import QueryRecorder

__all__ = ["instrument_sqlalchemy"]

_STARTED = "_asyncperf_started"

# The recorders already listening on each sync engine (instrumenting twice is a no-op).
_instrumented: weakref.WeakKeyDictionary[Any, weakref.WeakSet[QueryRecorder]] = (
    weakref.WeakKeyDictionary()
)


def instrument_sqlalchemy(engine: Any, recorder: QueryRecorder) -> None:
    """Time every statement of ``engine`` by fingerprint into ``recorder``.

    Listens to ``before_cursor_execute``/``after_cursor_execute`` (and ``handle_error``
    for failures) on the sync engine behind an ``AsyncEngine`` (a sync ``Engine`` works
    too). A failure is counted under the driver's own exception class. Only the
    statement text is seen, normalised by :func:`fingerprint`; the bound
    parameters never reach the metrics. Instrumenting an engine twice changes nothing.

    Raises:
        ConfigurationError: ``engine`` is not a SQLAlchemy engine.
    """
    try:
        from sqlalchemy import event
    except ImportError as exc:  # pragma: no cover - the dev environment has it
        raise ImportError(
            "instrument_sqlalchemy needs SQLAlchemy: pip install 'asyncperf[sqlalchemy]'"
        ) from exc
    sync_engine = getattr(engine, "sync_engine", engine)
    if not hasattr(sync_engine, "dispatch") or not hasattr(sync_engine, "dialect"):
        raise ConfigurationError(
            f"instrument_sqlalchemy expects a SQLAlchemy (Async)Engine, got {type(engine).__name__}"
        )
    clock = time.perf_counter
    record = recorder.record

    def before(
        _conn: Any, _cursor: Any, _statement: str, _params: Any, context: Any, _many: bool
    ) -> None:
        setattr(context, _STARTED, clock())

    def after(
        _conn: Any, _cursor: Any, statement: str, _params: Any, context: Any, _many: bool
    ) -> None:
        started = getattr(context, _STARTED, None)
        if started is not None:
            record(statement, clock() - started)

    def failed(exception_context: Any) -> None:
        context = exception_context.execution_context
        started = getattr(context, _STARTED, None) if context is not None else None
        statement = exception_context.statement
        if started is not None and statement is not None:
            error = exception_context.original_exception
            # The DBAPI adapter's error wraps the driver's own (asyncpg's
            # DivisionByZeroError...): label with the driver's, as instrument_asyncpg does.
            record(statement, clock() - started, error.__cause__ or error)

    recorders = _instrumented.setdefault(sync_engine, weakref.WeakSet())
    if recorder in recorders:
        return
    recorders.add(recorder)
    event.listen(sync_engine, "before_cursor_execute", before)
    event.listen(sync_engine, "after_cursor_execute", after)
    event.listen(sync_engine, "handle_error", failed)
