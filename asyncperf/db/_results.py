"""The base of every result dataclass: a ``to_dict()`` fit for ``json.dumps``."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
from typing import Any

__all__ = ["Result", "jsonable"]


def jsonable(value: Any) -> Any:
    """Return ``value`` with dataclasses, tuples, enums, decimals and dates made JSON-able."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    return value


class Result:
    """Mixin for the frozen result dataclasses of :mod:`asyncperf.db`."""

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        """Return the result as plain JSON-able data (lists, dicts, numbers, strings)."""
        data = jsonable(self)
        assert isinstance(data, dict)
        return data
