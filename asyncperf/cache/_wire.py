"""One command on one pooled connection: the store's lone GET and SET without the layers
redis-py wraps around every command.

``Redis.execute_command`` runs each command through a retry loop, an event dispatch and
redis-py 8's observability records, about 20 µs a command on the 2-core bench machine
(`bench/test_redis.py`, the ``diag:`` rows): as much as everything else asyncperf does on
a get. A store that built its own client has none of those layers configured (retries off,
no socket timeout, the store's own deadline and breaker in charge), so for it the same
round trip is: take a connection from the pool, send, read the reply, give it back. A
connection that fails or is cancelled mid-command is closed, never returned with a reply
still on its way (redis-py's ``read_response`` closes it too; closing twice is harmless).
"""

from __future__ import annotations

import inspect
from typing import Any

__all__ = ["Wire"]


class Wire:
    """Send single commands on ``pool``'s connections (a plain redis-py ConnectionPool)."""

    __slots__ = ("_name", "_pool")

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        # redis-py < 5.3 wants the command name; later versions deprecate passing it.
        parameter = inspect.signature(pool.get_connection).parameters.get("command_name")
        self._name = parameter is not None and parameter.default is inspect.Parameter.empty

    async def command(self, *args: Any) -> Any:
        """Send ``args`` as one command and return its raw reply (no response callback)."""
        pool = self._pool
        connection = await (pool.get_connection(args[0]) if self._name else pool.get_connection())
        try:
            await connection.send_command(*args)
            return await connection.read_response()
        except BaseException:
            await connection.disconnect(nowait=True)
            raise
        finally:
            await pool.release(connection)
