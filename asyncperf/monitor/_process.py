"""Process resources, sampled on a timer: psutil when installed, the stdlib otherwise."""

from __future__ import annotations

import gc
import os
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from ._metrics import Family, Sample

__all__ = ["ProcessCollector", "ProcessSample"]

try:
    import resource as _resource
except ImportError:  # pragma: no cover - Windows
    _resource = None  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class ProcessSample:
    """One reading of the process's resources.

    Attributes:
        at: ``time.monotonic()`` when read.
        cpu_seconds: User + system CPU time since the process started.
        cpu_ratio: CPU seconds per wall second since the previous reading (1.0 = one
            core busy), ``None`` for the first reading.
        resident_memory_bytes: RSS now (``None`` if unknown).
        virtual_memory_bytes: Virtual size (``None`` if unknown).
        max_resident_memory_bytes: Peak RSS (``None`` if unknown).
        open_fds: Open file descriptors (``None`` if unknown).
        max_fds: The soft limit on file descriptors (``None`` if unknown).
        threads: Threads in the process.
        start_time_seconds: Unix time the process started (or the monitor was imported).
        gc_collections: Collections per generation.
        gc_collected: Objects collected per generation.
        gc_uncollectable: Uncollectable objects per generation.
        source: ``"psutil"`` or ``"stdlib"``.
    """

    at: float
    cpu_seconds: float
    cpu_ratio: float | None
    resident_memory_bytes: float | None
    virtual_memory_bytes: float | None
    max_resident_memory_bytes: float | None
    open_fds: float | None
    max_fds: float | None
    threads: int
    start_time_seconds: float
    gc_collections: tuple[int, ...]
    gc_collected: tuple[int, ...]
    gc_uncollectable: tuple[int, ...]
    source: str

    def to_dict(self) -> dict[str, Any]:
        """Return the reading as a plain dict (for JSON)."""
        return asdict(self)


_IMPORTED_AT = time.time()


class ProcessCollector:
    """Reads this process's resources; :meth:`sample` is meant for a timer.

    Args:
        use_psutil: ``None`` (default) uses psutil when it is installed; ``False``
            forces the stdlib fallback; ``True`` requires psutil.

    Raises:
        ImportError: ``use_psutil=True`` and psutil is missing.
    """

    def __init__(self, *, use_psutil: bool | None = None) -> None:
        self._process: Any = None
        if use_psutil is not False:
            try:
                import psutil
            except ImportError:
                if use_psutil:
                    raise ImportError(
                        "process metrics through psutil need it: pip install 'asyncperf[monitor]'"
                    ) from None
            else:
                self._process = psutil.Process()
        self.source = "psutil" if self._process is not None else "stdlib"
        self.last: ProcessSample | None = None
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    def sample(self) -> ProcessSample:
        """Read the resources now (about 60 µs with psutil), keep and return the reading."""
        now = time.monotonic()
        rss = vms = fds = None
        if self._process is not None:
            process = self._process
            with process.oneshot():
                times = process.cpu_times()
                memory = process.memory_info()
                threads = process.num_threads()
                fds = float(process.num_fds()) if hasattr(process, "num_fds") else None
                start = float(process.create_time())
            cpu = float(times.user + times.system)
            rss, vms = float(memory.rss), float(memory.vms)
        else:
            cpu, start = time.process_time(), _IMPORTED_AT
            threads = threading.active_count()
            rss, vms = self._statm()
            fds = self._count_fds()
        peak = max_fds = None
        if _resource is not None:
            usage = _resource.getrusage(_resource.RUSAGE_SELF)
            # ru_maxrss is KiB on Linux, bytes on macOS.
            peak = float(usage.ru_maxrss) * (1 if os.uname().sysname == "Darwin" else 1024)
            soft = _resource.getrlimit(_resource.RLIMIT_NOFILE)[0]
            max_fds = float(soft) if soft != _resource.RLIM_INFINITY else None
        ratio = None
        if self.last is not None and now > self.last.at:
            ratio = max(0.0, (cpu - self.last.cpu_seconds) / (now - self.last.at))
        stats = gc.get_stats()
        reading = ProcessSample(
            at=now,
            cpu_seconds=cpu,
            cpu_ratio=ratio,
            resident_memory_bytes=rss,
            virtual_memory_bytes=vms,
            max_resident_memory_bytes=peak,
            open_fds=fds,
            max_fds=max_fds,
            threads=int(threads),
            start_time_seconds=start,
            gc_collections=tuple(int(g.get("collections", 0)) for g in stats),
            gc_collected=tuple(int(g.get("collected", 0)) for g in stats),
            gc_uncollectable=tuple(int(g.get("uncollectable", 0)) for g in stats),
            source=self.source,
        )
        self.last = reading
        return reading

    def _statm(self) -> tuple[float | None, float | None]:
        try:
            with open("/proc/self/statm", encoding="ascii") as file:
                size, resident = file.read().split()[:2]
        except (OSError, ValueError):
            return None, None
        return float(int(resident) * self._page), float(int(size) * self._page)

    @staticmethod
    def _count_fds() -> float | None:
        for path in ("/proc/self/fd", "/dev/fd"):
            try:
                return float(len(os.listdir(path)))
            except OSError:
                continue
        return None

    def families(self, reading: ProcessSample) -> list[Family]:
        """Return ``reading`` as exposition families (``asyncperf_process_*``, GC)."""
        out: list[Family] = []

        def single(name: str, mtype: str, help_text: str, value: float | None) -> None:
            if value is not None:
                out.append(Family(name, mtype, help_text, [Sample(name, (), float(value))]))  # type: ignore[arg-type]

        single(
            "asyncperf_process_cpu_seconds_total",
            "counter",
            "User and system CPU time.",
            reading.cpu_seconds,
        )
        single(
            "asyncperf_process_resident_memory_bytes",
            "gauge",
            "Resident memory.",
            reading.resident_memory_bytes,
        )
        single(
            "asyncperf_process_virtual_memory_bytes",
            "gauge",
            "Virtual memory.",
            reading.virtual_memory_bytes,
        )
        single(
            "asyncperf_process_max_resident_memory_bytes",
            "gauge",
            "Peak resident memory.",
            reading.max_resident_memory_bytes,
        )
        single("asyncperf_process_open_fds", "gauge", "Open file descriptors.", reading.open_fds)
        single("asyncperf_process_max_fds", "gauge", "File descriptor limit.", reading.max_fds)
        single("asyncperf_process_threads", "gauge", "Threads.", reading.threads)
        single(
            "asyncperf_process_start_time_seconds",
            "gauge",
            "Start time, Unix seconds.",
            reading.start_time_seconds,
        )
        for suffix, values, help_text in (
            ("collections_total", reading.gc_collections, "GC runs per generation."),
            ("objects_collected_total", reading.gc_collected, "Objects collected by the GC."),
            ("objects_uncollectable_total", reading.gc_uncollectable, "Uncollectable objects."),
        ):
            name = f"asyncperf_python_gc_{suffix}"
            samples = [
                Sample(name, (("generation", str(gen)),), float(v)) for gen, v in enumerate(values)
            ]
            out.append(Family(name, "counter", help_text, samples))
        return out
