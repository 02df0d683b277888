"""Throwaway redis-server processes for tests: standalone, replicas, Sentinel, Cluster.

Every server runs on a free loopback port with its own directory under the test's
``tmp_path`` (config, logs, ``nodes.conf``), persistence off. Nothing here touches the
shared Redis on 6379.

    server = start_redis(tmp_path)                      # a plain server
    replica = start_redis(tmp_path, "--replicaof", "127.0.0.1", str(server.port))
    server.stop(); server.cont(); server.kill()         # SIGSTOP, SIGCONT, SIGKILL

    with start_cluster(tmp_path, n=3) as cluster: ...   # cluster_state:ok, 16384 slots
    with start_sentinel_setup(tmp_path) as setup: ...   # master, replica, one sentinel

``redis-server`` and ``redis-cli`` are found on PATH (or through ``REDIS_SERVER`` /
``REDIS_CLI``); when missing, the test fails with a message saying so, never skips.
Processes still alive at interpreter exit are killed.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

__all__ = [
    "HOST",
    "ClusterSetup",
    "RedisServer",
    "SentinelSetup",
    "command",
    "free_port",
    "info",
    "info_cluster",
    "redis_binary",
    "start_cluster",
    "start_redis",
    "start_sentinel",
    "start_sentinel_setup",
    "wait_replica_synced",
    "wait_replicated",
    "wait_until",
]

HOST = "127.0.0.1"
STARTUP_TIMEOUT = 10.0
_CLUSTER_BUS_OFFSET = 10_000

T = TypeVar("T")

_live: set[RedisServer] = set()


def redis_binary(name: str = "redis-server") -> str:
    """Return the path of ``redis-server`` / ``redis-cli``; fail the test when missing."""
    variable = name.upper().replace("-", "_")
    override = os.environ.get(variable)
    found = override or shutil.which(name)
    if not found or not os.access(found, os.X_OK):
        where = f"${variable}={override!r} is not executable" if override else "not on PATH"
        pytest.fail(
            f"{name} is not installed ({where}): these tests start real Redis servers. "
            f"Install it (e.g. `apt-get install redis-server`) or set ${variable}.",
            pytrace=False,
        )
    return found


def free_port(*, cluster_bus: bool = False) -> int:
    """Return a loopback port nobody listens on (and port+10000 too, for a cluster bus).

    There is a race between this check and the server binding it: :func:`start_redis`
    retries on another port when the server fails to start.
    """
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port: int = sock.getsockname()[1]
        if not cluster_bus:
            return port
        if port + _CLUSTER_BUS_OFFSET > 65_535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((HOST, port + _CLUSTER_BUS_OFFSET))
            except OSError:
                continue
        return port
    raise RuntimeError("no free loopback port found")


def command(port: int, *args: object, timeout: float = 2.0) -> Any:
    """Send one command to ``127.0.0.1:port`` and return the decoded reply.

    A minimal RESP2 client (a new connection per call), so the helpers need no event
    loop. Bulk strings come back as ``str``; error replies raise ``RuntimeError``.
    """
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        payload = [f"*{len(args)}\r\n".encode()]
        for arg in args:
            data = str(arg).encode()
            payload.append(b"$%d\r\n%s\r\n" % (len(data), data))
        sock.sendall(b"".join(payload))
        reader = sock.makefile("rb")
        return _read_reply(reader)


def _read_reply(reader: Any) -> Any:
    line = reader.readline()
    if not line:
        raise ConnectionError("connection closed before a reply")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return None
        data = reader.read(size + 2)[:-2]
        return data.decode(errors="replace")
    if kind == b"*":
        size = int(rest)
        return None if size < 0 else [_read_reply(reader) for _ in range(size)]
    raise RuntimeError(f"unexpected reply {line!r}")


def info(port: int, section: str = "") -> dict[str, str]:
    """Return ``INFO [section]`` as a flat dict of strings."""
    text = command(port, "INFO", section) if section else command(port, "INFO")
    fields: dict[str, str] = {}
    for line in str(text).splitlines():
        if line and not line.startswith("#") and ":" in line:
            name, _, value = line.partition(":")
            fields[name] = value
    return fields


def wait_until(
    predicate: Callable[[], T], *, timeout: float = 30.0, interval: float = 0.05, what: str = ""
) -> T:
    """Poll ``predicate`` (exceptions count as "not yet") until truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = predicate()
        except Exception as exc:
            last_error = exc
        else:
            if result:
                return result
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error is not None else ""
            raise TimeoutError(
                f"timed out after {timeout:g}s waiting for {what or predicate}{detail}"
            )
        time.sleep(interval)


@dataclass(eq=False)
class RedisServer:
    """One redis-server process this test started.

    Attributes:
        port: Its TCP port on 127.0.0.1.
        directory: Its working directory (log, config, cluster nodes file).
        process: The ``Popen`` handle.
    """

    port: int
    directory: Path
    process: subprocess.Popen[bytes]
    host: str = HOST
    role: str = "redis"
    stopped: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def log_path(self) -> Path:
        return self.directory / "redis.log"

    def log(self, tail: int = 40) -> str:
        """Return the last ``tail`` lines of the server's log."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-tail:])

    def alive(self) -> bool:
        return self.process.poll() is None

    def command(self, *args: object, timeout: float = 2.0) -> Any:
        return command(self.port, *args, timeout=timeout)

    def info(self, section: str = "") -> dict[str, str]:
        return info(self.port, section)

    def ping(self) -> bool:
        try:
            return bool(self.command("PING", timeout=0.5) == "PONG")
        except (OSError, RuntimeError):
            return False

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Wait until the server answers PING (and has finished loading)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(
                    f"redis-server on port {self.port} exited with {self.process.returncode}:\n"
                    + self.log()
                )
            if self.ping():
                return
            time.sleep(0.02)
        raise TimeoutError(f"redis-server on port {self.port} not ready in {timeout:g}s")

    def _signal(self, signum: int) -> None:
        if self.alive():
            os.kill(self.pid, signum)

    def kill(self) -> None:
        """SIGKILL the server (no shutdown, no goodbye to clients) and reap it."""
        if self.alive():
            self._signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        _live.discard(self)

    def stop(self) -> None:
        """SIGSTOP the server: it keeps its sockets open and answers nothing."""
        self._signal(signal.SIGSTOP)
        self.stopped = True

    def cont(self) -> None:
        """SIGCONT a stopped server."""
        self._signal(signal.SIGCONT)
        self.stopped = False

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop the server cleanly (SIGTERM: no save, persistence is off); kill it if stuck."""
        if self.alive():
            self.cont()  # a stopped process would never handle SIGTERM
            self._signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill()


def _spawn(
    tmp_path: Path, role: str, make_argv: Callable[[int, Path], list[str]], *, cluster: bool
) -> RedisServer:
    binary = redis_binary("redis-server")
    last_error: BaseException | None = None
    for _ in range(5):
        port = free_port(cluster_bus=cluster)
        directory = Path(tmp_path) / f"{role}-{port}"
        directory.mkdir(parents=True, exist_ok=True)
        argv = [binary, *make_argv(port, directory)]
        with (directory / "redis.log").open("wb") as log:
            process = subprocess.Popen(
                argv,
                cwd=directory,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C of pytest is not delivered to it
            )
        server = RedisServer(port=port, directory=directory, process=process, role=role)
        _live.add(server)
        try:
            server.wait_ready()
        except (RuntimeError, TimeoutError) as exc:  # e.g. the port was taken meanwhile
            last_error = exc
            server.kill()
            continue
        return server
    raise RuntimeError(f"could not start {role}: {last_error}")


def _base_args(port: int, directory: Path) -> list[str]:
    return [
        "--port", str(port),
        "--bind", HOST,
        "--dir", str(directory),
        "--save", "",
        "--appendonly", "no",
        "--daemonize", "no",
        "--protected-mode", "no",
        "--logfile", "",
        "--loglevel", "notice",
        "--repl-diskless-sync-delay", "0",  # replicas sync at once, not after 5 s
    ]  # fmt: skip


def start_redis(tmp_path: Path, *args: str) -> RedisServer:
    """Start ``redis-server`` on a free port and wait until it answers PING.

    Args:
        tmp_path: Parent directory; the server gets ``<tmp_path>/redis-<port>``.
        *args: Extra command-line options, e.g. ``"--replicaof", "127.0.0.1", "6380"``.
    """
    cluster = "--cluster-enabled" in args
    return _spawn(
        tmp_path,
        "redis",
        lambda port, directory: [*_base_args(port, directory), *args],
        cluster=cluster,
    )


def start_sentinel(
    tmp_path: Path,
    master: RedisServer,
    *,
    name: str = "mymaster",
    quorum: int = 1,
    down_after_ms: int = 500,
    failover_timeout_ms: int = 3000,
) -> RedisServer:
    """Start a sentinel monitoring ``master`` as ``name``; wait until it answers PING."""

    def argv(port: int, directory: Path) -> list[str]:
        conf = directory / "sentinel.conf"
        conf.write_text(
            "\n".join(
                [
                    f"port {port}",
                    f"bind {HOST}",
                    f"dir {directory}",
                    "protected-mode no",
                    f"sentinel monitor {name} {master.host} {master.port} {quorum}",
                    f"sentinel down-after-milliseconds {name} {down_after_ms}",
                    f"sentinel failover-timeout {name} {failover_timeout_ms}",
                    f"sentinel parallel-syncs {name} 1",
                    "",
                ]
            )
        )
        return [str(conf), "--sentinel"]

    return _spawn(tmp_path, "sentinel", argv, cluster=False)


@dataclass(eq=False)
class SentinelSetup:
    """A master, its replicas and the sentinels watching them (``name`` is the service)."""

    master: RedisServer
    replicas: list[RedisServer]
    sentinels: list[RedisServer]
    name: str = "mymaster"

    @property
    def servers(self) -> list[RedisServer]:
        return [self.master, *self.replicas, *self.sentinels]

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        return [sentinel.address for sentinel in self.sentinels]

    def master_address(self) -> tuple[str, int]:
        """The master as the first sentinel reports it now."""
        host, port = self.sentinels[0].command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)
        return host, int(port)

    def known_replicas(self) -> int:
        """Replicas the first sentinel knows and considers up."""
        replicas = self.sentinels[0].command("SENTINEL", "REPLICAS", self.name)
        up = 0
        for fields in replicas:
            flags = dict(zip(fields[::2], fields[1::2], strict=False)).get("flags", "")
            if "down" not in flags and "disconnected" not in flags:
                up += 1
        return up

    def wait_replicated(self, timeout: float = 30.0) -> None:
        """Wait until the replicas have applied everything the master has written."""
        wait_replicated(self.master, self.replicas, timeout)

    def server_at(self, port: int) -> RedisServer:
        return next(server for server in self.servers if server.port == port)

    def wait_for_new_master(self, old_port: int, timeout: float = 30.0) -> RedisServer:
        """Wait until the failover away from ``old_port`` is complete; return the new master.

        Complete means: the sentinel names another master, that server says it is a
        master, and the old master, if it is running (not killed, not SIGSTOPped), has
        been turned into its replica. Until then the old master still takes writes from
        connections opened before the failover (Sentinel demotes it only after a few
        seconds), and they are lost when it resyncs.
        """
        deadline = time.monotonic() + timeout
        old = self.server_at(old_port)

        def promoted() -> RedisServer | None:
            _, port = self.master_address()
            if port == old_port:
                return None
            server = self.server_at(port)
            return server if server.info("replication").get("role") == "master" else None

        new_master = wait_until(promoted, timeout=timeout, what="the sentinel failover")
        if old.alive() and not old.stopped:

            def demoted() -> bool:
                fields = old.info("replication")
                return fields.get("role") == "slave" and fields.get("master_port") == str(
                    new_master.port
                )

            wait_until(
                demoted,
                timeout=max(deadline - time.monotonic(), 0.1),
                what=f"the old master {old_port} to become a replica of {new_master.port}",
            )
        self.replicas = [s for s in [self.master, *self.replicas] if s is not new_master]
        self.master = new_master
        return new_master

    def close(self) -> None:
        for server in reversed(self.servers):
            server.kill()

    def __enter__(self) -> SentinelSetup:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def wait_replica_synced(replica: RedisServer, timeout: float = 30.0) -> None:
    """Wait until ``replica`` reports its link to the master up."""
    wait_until(
        lambda: replica.info("replication").get("master_link_status") == "up",
        timeout=timeout,
        what=f"replica {replica.port} to sync",
    )


def wait_replicated(
    master: RedisServer, replicas: list[RedisServer], timeout: float = 30.0
) -> None:
    """Wait until every replica has applied everything ``master`` has written so far.

    Use this rather than ``WAIT``, which only counts the writes of its own connection.
    (After a diskless full sync, a replica gets the stream only after its first
    ``REPLCONF ACK``, up to a second later.)
    """
    target = int(master.info("replication")["master_repl_offset"])
    for replica in replicas:
        wait_until(
            lambda replica=replica: int(replica.info("replication")["slave_repl_offset"]) >= target,
            timeout=timeout,
            what=f"replica {replica.port} to reach offset {target}",
        )


def start_sentinel_setup(
    tmp_path: Path,
    *,
    name: str = "mymaster",
    down_after_ms: int = 500,
    failover_timeout_ms: int = 3000,
) -> SentinelSetup:
    """Start a master, one synced replica and one sentinel (quorum 1) that knows both."""
    servers: list[RedisServer] = []
    try:
        master = start_redis(tmp_path)
        servers.append(master)
        replica = start_redis(tmp_path, "--replicaof", HOST, str(master.port))
        servers.append(replica)
        wait_replica_synced(replica)
        sentinel = start_sentinel(
            tmp_path,
            master,
            name=name,
            down_after_ms=down_after_ms,
            failover_timeout_ms=failover_timeout_ms,
        )
        servers.append(sentinel)
        setup = SentinelSetup(master=master, replicas=[replica], sentinels=[sentinel], name=name)
        wait_until(
            lambda: setup.known_replicas() >= 1,
            timeout=30.0,
            what="the sentinel to discover the replica",
        )
        return setup
    except BaseException:
        for server in servers:
            server.kill()
        raise


@dataclass(eq=False)
class ClusterSetup:
    """Cluster nodes (all masters, no replicas) sharing the 16384 slots."""

    nodes: list[RedisServer] = field(default_factory=list)

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [node.address for node in self.nodes]

    @property
    def host(self) -> str:
        return self.nodes[0].host

    @property
    def port(self) -> int:
        return self.nodes[0].port

    def state_ok(self) -> bool:
        """Whether every node reports ``cluster_state:ok`` and all slots assigned."""
        for node in self.nodes:
            fields = info_cluster(node)
            if fields.get("cluster_state") != "ok" or fields.get("cluster_slots_ok") != "16384":
                return False
            if fields.get("cluster_known_nodes") != str(len(self.nodes)):
                return False
        return True

    def slot_owners(self) -> dict[int, RedisServer]:
        """Map every slot to the node serving it, from ``CLUSTER SLOTS``."""
        by_port = {node.port: node for node in self.nodes}
        owners: dict[int, RedisServer] = {}
        for first, last, master, *_ in self.nodes[0].command("CLUSTER", "SLOTS"):
            for slot in range(int(first), int(last) + 1):
                owners[slot] = by_port[int(master[1])]
        return owners

    def node_for_key(self, key: str | bytes) -> RedisServer:
        """The node serving ``key``'s slot now."""
        from redis.crc import key_slot

        raw = key.encode() if isinstance(key, str) else key
        return self.slot_owners()[key_slot(raw)]

    def close(self) -> None:
        for node in self.nodes:
            node.kill()

    def __enter__(self) -> ClusterSetup:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def info_cluster(node: RedisServer) -> dict[str, str]:
    """Return ``CLUSTER INFO`` of ``node`` as a dict."""
    text = str(node.command("CLUSTER", "INFO"))
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def _cluster_node_args(port: int, directory: Path) -> list[str]:
    return [
        *_base_args(port, directory),
        "--cluster-enabled", "yes",
        "--cluster-config-file", f"nodes-{port}.conf",
        "--cluster-node-timeout", "2000",
    ]  # fmt: skip


def start_cluster(tmp_path: Path, n: int = 3, *, timeout: float = 30.0) -> ClusterSetup:
    """Start ``n`` (>= 3) cluster-enabled masters, join them, wait for ``cluster_state:ok``."""
    if n < 3:
        raise ValueError("redis-cli --cluster create needs at least 3 masters")
    cluster = ClusterSetup()
    try:
        for _ in range(n):
            cluster.nodes.append(_spawn(tmp_path, "cluster", _cluster_node_args, cluster=True))
        create = subprocess.run(
            [
                redis_binary("redis-cli"),
                "--cluster",
                "create",
                *(f"{node.host}:{node.port}" for node in cluster.nodes),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if create.returncode != 0:
            raise RuntimeError(
                f"redis-cli --cluster create failed ({create.returncode}):\n"
                f"{create.stdout}\n{create.stderr}"
            )
        wait_until(cluster.state_ok, timeout=timeout, what="cluster_state:ok on every node")
        return cluster
    except BaseException:
        cluster.close()
        raise


@atexit.register
def _kill_leftovers() -> None:
    for server in list(_live):
        server.kill()
