"""Background index jobs: ``POST /index`` queues one, ``GET /jobs/{id}`` reports it.

Jobs run one at a time in a worker thread (two index runs over one catalog would only
contend). A job names configured roots only. Searches keep working meanwhile: the
indexer commits batch by batch (SQLite WAL) and the FAISS index follows the catalog's
generation. Cancelling (at shutdown) stops after the current batch, which is saved.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from clipfind.errors import ClipfindError, NotFoundError, QueryError
from clipfind.library import Clipfind

log = logging.getLogger(__name__)
KEEP_FINISHED = 100


class JobCancelled(Exception):
    """Raised from the progress callback to stop an index run between batches."""


@dataclass(frozen=True)
class Job:
    id: str
    roots: tuple[str, ...]
    status: str = "queued"
    done: int = 0
    total: int = 0
    created_at: datetime = field(default_factory=datetime.now)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    summary: dict[str, Any] | None = None
    error: str | None = None
    allow_removals: bool = False  # see clipfind.indexer.removals

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "roots": list(self.roots)}


def root_names(roots: list[Path]) -> dict[str, Path]:
    """A short, unique name per configured root: its folder name, numbered if repeated."""
    names: dict[str, Path] = {}
    for root in roots:
        base = root.name or "root"
        name, n = base, 2
        while name in names:
            name, n = f"{base}-{n}", n + 1
        names[name] = root
    return names


class JobManager:
    def __init__(self, clip: Clipfind, roots: list[Path]) -> None:
        self.clip = clip  # runs go through Clipfind.index, like `clipfind index`
        self.roots = root_names(roots)
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._run_lock = threading.Lock()  # one index run at a time
        self._cancel = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self, root: str | None, allow_removals: bool = False) -> Job:
        """Queue an index run over one configured root (by name), or all of them. A run
        over the same roots that is already queued or running is returned instead."""
        if not self.roots:
            raise QueryError("this server has no indexing roots configured "
                             "(start it with `clipfind serve --root PATH`)")
        if root is not None and root not in self.roots:
            raise NotFoundError(f"no configured root named {root!r}; "
                                f"known: {', '.join(sorted(self.roots))}")
        names = (root,) if root is not None else tuple(self.roots)
        with self._lock:
            for job in self._jobs.values():
                if (job.roots == names and job.allow_removals == allow_removals
                        and job.status in ("queued", "running")):
                    return job
            job = Job(uuid.uuid4().hex[:16], names, allow_removals=allow_removals)
            self._jobs[job.id] = job
            self._trim()
        thread = threading.Thread(target=self._run, args=(job.id,), name=f"index-{job.id}",
                                  daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()
        return job

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise NotFoundError(f"no job {job_id!r} (jobs are kept until the server restarts)")
        return job

    def list(self) -> list[Job]:
        with self._lock:
            return list(reversed(self._jobs.values()))

    def close(self, timeout: float = 30.0) -> None:
        """Cancel queued and running jobs; wait (bounded) for the current batch to land."""
        self._cancel.set()
        for thread in self._threads:
            thread.join(timeout)

    # -- worker ----------------------------------------------------------------------
    def _update(self, job_id: str, **changes: Any) -> None:
        with self._lock:
            self._jobs[job_id] = replace(self._jobs[job_id], **changes)

    def _trim(self) -> None:
        finished = [j.id for j in self._jobs.values() if j.status not in ("queued", "running")]
        for job_id in finished[: max(0, len(self._jobs) - KEEP_FINISHED)]:
            del self._jobs[job_id]

    def _run(self, job_id: str) -> None:
        with self._run_lock:
            if self._cancel.is_set():
                self._update(job_id, status="cancelled", finished_at=datetime.now())
                return
            job = self.get(job_id)
            self._update(job_id, status="running", started_at=datetime.now())

            def progress(done: int, total: int) -> None:
                self._update(job_id, done=done, total=total)
                if self._cancel.is_set():
                    raise JobCancelled

            try:
                summary = self.clip.index([self.roots[n] for n in job.roots], progress=progress,
                                          allow_removals=job.allow_removals)
            except JobCancelled:
                self._update(job_id, status="cancelled", finished_at=datetime.now())
            except ClipfindError as exc:
                self._update(job_id, status="failed", error=str(exc), finished_at=datetime.now())
            except Exception as exc:  # a job must always end in a reported state
                log.exception("index job %s failed", job_id)
                self._update(job_id, status="failed", error=f"internal error: {type(exc).__name__}",
                             finished_at=datetime.now())
            else:
                doc = summary.as_dict()
                doc["skipped_files"] = doc["skipped_files"][:100]
                self._update(job_id, status="done", summary=doc, finished_at=datetime.now())
