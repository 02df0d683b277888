"""Several workers, one scrape: each worker publishes its series to a shared directory.

Every worker writes ``worker-<id>.json`` (atomically, through a temporary file and
``os.replace``); a scrape of any worker merges the files that are still fresh, each
worker's samples under its own ``worker`` label. A stopped worker removes its file.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ._metrics import Family, Sample

__all__ = ["WorkerFiles"]


class WorkerFiles:
    """The shared directory of one app's workers, seen from one worker.

    Args:
        directory: The directory every worker of the app uses.
        worker: This worker's ``worker`` label value.
        publish_interval: Seconds between this worker's writes; files not written for
            three intervals (at least 30 s) count as dead workers and are skipped.
    """

    def __init__(self, directory: Path, worker: str | None, *, publish_interval: float) -> None:
        self.directory = directory
        self.worker = worker
        self.publish_interval = publish_interval

    @property
    def own_file(self) -> Path:
        """This worker's file."""
        return self.directory / f"worker-{self.worker}.json"

    def publish(self, families: list[Family]) -> None:
        """Write this worker's families (replacing its previous file atomically)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        payload = {
            "worker": self.worker,
            "pid": os.getpid(),
            "families": [
                [f.name, f.type, f.help, [[s.name, list(s.labels), s.value] for s in f.samples]]
                for f in families
            ],
        }
        target = self.own_file
        temporary = target.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(payload), encoding="utf-8")
        os.replace(temporary, target)

    def merge(self) -> list[Family]:
        """Return every fresh worker's families, each sample with its ``worker`` label."""
        stale_before = time.time() - max(3 * self.publish_interval, 30.0)
        own = self.own_file
        merged: dict[str, Family] = {}
        for path in sorted(self.directory.glob("worker-*.json")):
            try:
                if path != own and path.stat().st_mtime < stale_before:
                    continue
                payload = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            worker = (("worker", str(payload.get("worker"))),)
            for name, mtype, help_text, samples in payload.get("families", []):
                family = merged.setdefault(name, Family(name, mtype, help_text))
                family.samples.extend(
                    Sample(s_name, worker + tuple((k, v) for k, v in labels), float(value))
                    for s_name, labels, value in samples
                )
        return list(merged.values())

    def remove(self) -> None:
        """Remove this worker's file (its probes stopped)."""
        self.own_file.unlink(missing_ok=True)
