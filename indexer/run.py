"""Indexing a collection: walk → plan → prepare (threads) → encode (batches) → write.

Incremental by (size, mtime); a moved or renamed file keeps its vector (content hash);
files gone from an indexed root leave the catalog at the end of the run.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clipfind.encoding import Encoder
from clipfind.errors import CollectionError, RemovalRefusedError
from clipfind.indexer import removals
from clipfind.indexer.encode import EncodeStage, single_thread_torch
from clipfind.indexer.prepare import (
    CHANGED,
    DUPLICATE,
    MOVED,
    NEW,
    SKIPPED,
    TOUCHED,
    Prepared,
    Preparer,
    mark_repeat,
)
from clipfind.indexer.removals import Confirm
from clipfind.indexer.timings import StageClock
from clipfind.indexer.walk import FileEntry, walk
from clipfind.indexer.writer import remove_missing, write_batch
from clipfind.store import roots as roots_facts
from clipfind.store.catalog import ItemState
from clipfind.store.collection import Collection, IndexUpdater
from clipfind.store.status import ItemStatus

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
# The prepare → encode stages of a run: the local threads (``_run_pipeline``) or another
# engine with the same signature (clipfind.indexer.ray_pipeline.RayPipeline); one with a
# ``wait_ready()`` is waited for in the load stage (its workers load the model there).
Pipeline = Callable[..., None]


@dataclass
class IndexSummary:
    """What one run did. ``skipped`` lists (path, reason) of files skipped in this run."""

    added: int = 0
    updated: int = 0
    moved: int = 0
    removed: int = 0
    unchanged: int = 0  # indexed files this run found as they were
    skipped: list[tuple[str, str]] = field(default_factory=list)
    # files skipped by an earlier run and unchanged since (not retried): unchanged +
    # still_skipped is what `clipfind info` counts as indexed + skipped under the roots
    still_skipped: int = 0
    encoded: int = 0
    seconds: float = 0.0
    pipeline_seconds: float = 0.0  # decode + encode + write only (no model load, no walk)
    # where the time went, stage by stage (clipfind.indexer.timings): the run's stages
    # and any pipeline that is handed the summary record into it
    clock: StageClock = field(default_factory=StageClock, repr=False, compare=False)

    @property
    def timings(self) -> dict[str, dict[str, float]]:
        """``{"wall": {stage: seconds}, "cpu": {"decode": s, "model": s}}``."""
        return self.clock.as_dict(self.seconds)

    @property
    def images_per_second(self) -> float:
        return self.encoded / self.seconds if self.seconds > 0 else 0.0

    @property
    def pipeline_images_per_second(self) -> float:
        """Throughput of decoding + encoding + writing, the rate a big folder sees."""
        return self.encoded / self.pipeline_seconds if self.pipeline_seconds > 0 else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "added": self.added, "updated": self.updated, "moved": self.moved,
            "removed": self.removed, "unchanged": self.unchanged,
            "still_skipped": self.still_skipped,
            "skipped": len(self.skipped),
            "skipped_files": [{"path": p, "reason": r} for p, r in self.skipped],
            "encoded": self.encoded, "seconds": round(self.seconds, 3),
            "images_per_second": round(self.images_per_second, 2),
            "pipeline_seconds": round(self.pipeline_seconds, 3),
            "pipeline_images_per_second": round(self.pipeline_images_per_second, 2),
            "timings": self.timings,
        }


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def index_paths(
    collection: Collection,
    encoder: Encoder,
    roots: Iterable[Path],
    exclude: Iterable[str] = (),
    batch_size: int | None = None,
    workers: int | None = None,
    reembed: bool = False,
    prune: bool = True,
    progress: Progress | None = None,
    allow_removals: bool = False,
    confirm: Confirm | None = None,
    pipeline: Pipeline | None = None,
) -> IndexSummary:
    """Bring the catalog and index up to date with the files under ``roots``.

    One run at a time per collection (:class:`CollectionBusyError` otherwise). Items whose
    files are gone are removed (``prune``), except where that looks like a drive that is
    not there: an emptied root, a root on another device, or most of a root at once
    (:mod:`clipfind.indexer.removals`) need ``allow_removals`` (or ``confirm`` to agree,
    for the last). ``pipeline`` runs the read → encode stages elsewhere (on Ray)."""
    started = time.perf_counter()
    roots = [Path(os.path.abspath(os.path.expanduser(str(r)))) for r in roots]
    for root in roots:
        if not root.exists():
            raise CollectionError(
                f"{root} does not exist (unmounted drive?); nothing was changed. "
                "Fix the path, or remove its items with `clipfind forget`."
            )
    with collection.writing(None if reembed else roots):  # a re-embed changes every item
        summary = _index_locked(collection, encoder, roots, list(exclude), batch_size, workers,
                                reembed, prune, progress,
                                None if allow_removals else (confirm or _refuse), pipeline)
    summary.seconds = time.perf_counter() - started
    return summary


def _refuse(question: str) -> bool:
    return False


def _index_locked(collection: Collection, encoder: Encoder, roots: list[Path], exclude: list[str],
                  batch_size: int | None, workers: int | None, reembed: bool, prune: bool,
                  progress: Progress | None, confirm: Confirm | None,
                  pipeline: Pipeline | None = None) -> IndexSummary:
    """``index_paths`` under the writer lock; ``confirm`` None = removals allowed."""
    catalog = collection.catalog
    summary = IndexSummary()
    clock = summary.clock
    rejected: list[tuple[str, str]] = []  # names the catalog cannot store
    with clock.stage("scan"):
        existing = catalog.states_under(roots)
        entries = list(walk(roots, exclude, skip_dirs=[collection.settings.data_dir],
                            rejected=rejected))
    summary.skipped.extend(rejected)
    seen = {e.path for e in entries}
    missing = {p: s for p, s in existing.items() if p not in seen}
    tallies = removals.tally(roots, existing, seen, missing)
    devices = removals.current_devices(roots)
    if prune and confirm is not None:  # before anything is written
        removals.check_vanished(catalog, tallies, devices)
        removals.check_empty_folders(roots, missing)
    if reembed:
        with clock.stage("load"):
            collection.bind_model(encoder, reembed=True)
        existing = catalog.states_under(roots)  # every vector forgotten: all files changed
        missing = {p: s for p, s in existing.items() if p not in seen}
    todo = [e for e in entries if _changed(existing.get(e.path), e)]
    changed = {e.path for e in todo}
    summary.still_skipped = sum(1 for e in entries if e.path not in changed
                                and existing[e.path].status != ItemStatus.OK)
    summary.unchanged = len(entries) - len(todo) - summary.still_skipped
    missing_by_hash = {s.content_hash: s for s in missing.values()
                       if s.content_hash and s.status == ItemStatus.OK}
    if not reembed and (todo or collection.stored_model != encoder.spec):
        # The identity check loads the model: a run with no file to look at (or only
        # removals) never loads it, unless another model was asked for.
        with clock.stage("load"):
            collection.bind_model(encoder)
    preparer = None
    if todo:
        # the transform (torch's, or its replay checked on the export) for the local
        # decode threads; a pipeline elsewhere (Ray) brings its own to its workers
        with clock.stage("load"):
            transform = encoder.preprocess if pipeline is None else None
            if pipeline is not None and hasattr(pipeline, "wait_ready"):
                pipeline.wait_ready()  # its workers' model loads
        preparer = Preparer(catalog, existing, missing_by_hash, transform,
                            encoder.image_size, collection.settings.max_pixels)
    batch_size = batch_size or collection.settings.batch_size
    workers = workers or collection.settings.workers or default_workers()
    refused: RemovalRefusedError | None = None
    with collection.updating() as updater:  # the index follows each batch as it commits
        pipeline_started = time.perf_counter()
        if preparer is not None:
            clock.pipeline_started()
            (pipeline or _run_pipeline)(catalog, encoder, preparer, todo, batch_size, workers,
                                        summary, progress, updater)
            clock.pipeline_stopped()
        elif progress:
            progress(0, 0)
        summary.pipeline_seconds = time.perf_counter() - pipeline_started
        summary.clock.export = float(getattr(encoder, "export_seconds", 0.0) or 0.0)
        if summary.encoded and getattr(encoder, "engine_label", None):  # for `info`
            catalog.set_meta("encoded_by", encoder.engine_label)  # type: ignore[attr-defined]
        claimed = preparer.claimed if preparer is not None else set()
        gone = {p: s.id for p, s in missing.items() if s.id not in claimed}
        saving = time.perf_counter()  # removals, then the index saved as the block ends
        if prune:
            refused = _remove(catalog, updater, gone, roots, tallies, confirm, summary)
    clock.wall["write"] += time.perf_counter() - saving
    roots_facts.record_unstorable(catalog, roots, rejected)
    if prune and refused is None:
        roots_facts.record_devices(catalog, devices)
    if refused is not None:
        raise refused
    return summary


def _remove(catalog: Any, updater: IndexUpdater, gone: dict[str, int], roots: list[Path],
            tallies: list[removals.RootTally], confirm: Confirm | None,
            summary: IndexSummary) -> RemovalRefusedError | None:
    """Remove the items whose files are gone, unless that needs a consent not given."""
    if confirm is not None:
        try:
            removals.check_share(removals.gone_per_root(gone, roots), tallies, confirm)
        except RemovalRefusedError as exc:
            return exc
    updater.apply(remove_missing(catalog, list(gone.values())))
    summary.removed = len(gone)
    return None


def _changed(old: ItemState | None, entry: FileEntry) -> bool:
    return old is None or old.size != entry.size or old.mtime_ns != entry.mtime_ns


def _run_pipeline(catalog, encoder, preparer: Preparer, todo: list[FileEntry],  # type: ignore[no-untyped-def]
                  batch_size: int, workers: int, summary: IndexSummary,
                  progress: Progress | None, updater: IndexUpdater) -> None:
    pending: list[Prepared] = []
    first_seen: set[str] = set()  # content hashes decoded so far in this run
    decoded = 0
    done = 0
    if progress:
        progress(0, len(todo))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode",
                            initializer=single_thread_torch) as pool, EncodeStage(encoder) as stage:
        window = batch_size * (stage.streams + 1) + workers  # every stream fed, one batch ahead
        for prepared in _bounded_map(pool, summary.clock.cpu_timed(preparer), todo, window,
                                     summary.clock):
            mark_repeat(prepared, first_seen)
            pending.append(prepared)
            count_prepared(prepared, summary)
            if prepared.pixels is not None:
                decoded += 1
            if decoded >= batch_size or len(pending) >= batch_size * 8:
                done += len(pending)
                with summary.clock.stage("model"):  # blocks while two batches are queued
                    finished = stage.submit(pending)
                write_encoded(catalog, finished, summary, updater)
                pending, decoded = [], 0
                if progress:
                    progress(done, len(todo))
        with summary.clock.stage("model"):
            finished = (stage.submit(pending) if pending else []) + stage.drain()
        done += len(pending)
        write_encoded(catalog, finished, summary, updater)
        if progress:
            progress(done, len(todo))


def write_encoded(catalog, encoded, summary: IndexSummary,  # type: ignore[no-untyped-def]
           updater: IndexUpdater) -> None:
    """Write the batches the encode stage has finished, oldest first."""
    for batch, vectors in encoded:
        summary.encoded += 0 if vectors is None else len(vectors)
        with summary.clock.stage("write"):
            updater.apply(write_batch(catalog, batch, vectors))
        for p in batch:
            p.pixels = None  # free memory early


def count_prepared(p: Prepared, summary: IndexSummary) -> None:
    if p.action == NEW or (p.action == DUPLICATE and p.existing_id is None):
        summary.added += 1
    elif p.action in (CHANGED, DUPLICATE):
        summary.updated += 1
    elif p.action == MOVED:
        summary.moved += 1
    elif p.action == TOUCHED:
        summary.unchanged += 1
    elif p.action == SKIPPED:
        summary.skipped.append((p.entry.path, p.reason or "unknown"))


def _bounded_map(pool: ThreadPoolExecutor, fn: Callable[[FileEntry], Prepared],
                 items: list[FileEntry], window: int, clock: StageClock) -> Iterator[Prepared]:
    """``pool.map`` in order, with at most ``window`` results waiting in memory; time
    spent waiting for the next result is the decoders' (``clock``)."""
    futures: list[Future[Prepared]] = []
    it = iter(items)
    for item in it:
        futures.append(pool.submit(fn, item))
        if len(futures) >= window:
            break
    head = 0
    while head < len(futures):
        with clock.stage("decode"):
            result = futures[head].result()
        futures[head] = None  # type: ignore[call-overload]
        head += 1
        nxt = next(it, None)
        if nxt is not None:
            futures.append(pool.submit(fn, nxt))
        yield result
