"""``clipfind index --ray ADDRESS``: the prepare and encode stages on a Ray cluster, the
plan and the writer where they always are.

The driver walks and plans by the catalog as a local run does, then streams chunks of
``batch_size`` files through Ray. On CPU actors (:meth:`_stream_fused`) each actor reads,
hashes, decodes, preprocesses and encodes a part of a chunk in one call
(:meth:`clipfind.indexer.ray_work.EncodeWorker.read_encode`); with GPU actors
(:meth:`_stream`) a task per chunk reads (:func:`clipfind.indexer.ray_work.read_chunk`),
the driver decides per file what needs encoding (touched, moved and duplicate files keep
the vectors they have), and a GPU actor encodes. Either way the driver's writer commits
chunk by chunk, oldest first, as a local run does: an interrupted run keeps every
finished chunk and the next run resumes. Ray tasks and actors rather than Ray Data: the
driver must decide by the catalog, and write in order through the one writer
(docs/indexing.md).

Ray is imported here only, when a run asks for it (``clipfind[ray]``).
"""

from __future__ import annotations

import logging
import socket
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from clipfind.config import Settings
from clipfind.encoding import Encoder
from clipfind.errors import ClipfindError, ClusterError, QueryError
from clipfind.indexer.prepare import CHANGED, NEW, SKIPPED, Prepared, Preparer, mark_repeat
from clipfind.indexer.ray_pool import RETRIES, EncodePool
from clipfind.indexer.ray_work import Row, read_chunk, warm_up
from clipfind.indexer.run import Progress, count_prepared, write_encoded
from clipfind.indexer.walk import FileEntry
from clipfind.store.status import ItemStatus

log = logging.getLogger(__name__)

INSTALL_HELP = "--ray needs Ray on this machine and every node: pip install 'clipfind[ray]'"


def connect(address: str) -> tuple[Any, bool]:
    """Join the running Ray cluster at ``address`` (``auto``, ``HOST:PORT`` or
    ``ray://HOST:PORT``); never starts one. Returns the ``ray`` module, and whether this
    call connected (False: the process was connected already)."""
    try:
        import ray
    except ImportError:
        raise ClusterError(INSTALL_HELP) from None
    if address in ("", "local"):
        raise QueryError(
            "--ray takes the address of a running cluster (auto, HOST:PORT or "
            "ray://HOST:PORT); start one with `ray start --head`"
        )
    if ray.is_initialized():  # a library user connected already: use that connection
        return ray, False
    _probe(address)
    try:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        _cluster_messages_to_log()
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ClusterError(f"cannot join the Ray cluster at {address}: {str(exc).splitlines()[0]}") from None
    return ray, True


def _cluster_messages_to_log() -> None:
    """Ray prints the cluster's notices (a worker died, a task is retried) on the driver's
    stdout, where ``clipfind index --json`` writes its document: log them instead."""
    from ray._private import worker  # private, so guarded: the notices then stay on stdout

    if callable(getattr(worker, "print_to_stdstream", None)):
        worker.print_to_stdstream = lambda data, **_: log.warning("ray: %s", " ".join(data["lines"]))


def _probe(address: str) -> None:
    """Refuse an address nothing listens on at once (Ray itself waits a minute or more)."""
    from ray._private import services  # where ``auto`` is looked up; private, so guarded

    target = address.removeprefix("ray://")
    try:
        if address == "auto":
            target = services.canonicalize_bootstrap_address(address) or ""
        host, _, port = target.rpartition(":")
        socket.create_connection((host, int(port)), timeout=5).close()
    except (ConnectionError, ValueError, OSError) as exc:
        where = "(no running cluster found)" if address == "auto" else f"at {address}"
        raise ClusterError(
            f"no Ray cluster is reachable {where}: {exc}. Start one with "
            "`ray start --head` (then --ray auto) or give its HOST:PORT"
        ) from None
    except Exception:  # Ray's private lookup changed: let ray.init decide
        log.debug("address probe skipped", exc_info=True)


@contextmanager
def on_ray(address: str | None, settings: Settings, encoder: Encoder | None) -> Iterator[RayPipeline | None]:
    """The pipeline for ``address`` while the run lasts (None: no address, run locally)."""
    if address is None:
        yield None
        return
    pipeline = RayPipeline(address, settings, encoder)
    try:
        yield pipeline
    finally:
        pipeline.close()


class RayPipeline:
    """The prepare → encode stages of :func:`clipfind.indexer.run.index_paths` on Ray."""

    def __init__(self, address: str, settings: Settings, encoder: Encoder | None) -> None:
        from clipfind.encoder import ClipEncoder

        if not isinstance(encoder, ClipEncoder):
            raise QueryError(
                "--ray loads the model by its spec on every node: it needs an "
                "open_clip model (--model), not an encoder object"
            )
        self.ray, self._connected = connect(address)
        self.pool: EncodePool | None = None
        self._transform: Any = None
        try:  # actors load the model (and readers import) while the driver walks and plans
            with _cluster_errors():
                self.pool = EncodePool(self.ray, settings, encoder)
                if not self.pool.fused:  # the read tasks preprocess as the driver's model does
                    self._transform = encoder.preprocess
                    warm = self.ray.remote(warm_up).options(
                        num_cpus=self.pool.read_cpus, scheduling_strategy="SPREAD"
                    )
                    light = encoder.torch_free_images
                    self._warming = [warm.remote(light) for _ in range(self.pool.read_window)]
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """End the actors; leave the cluster if this pipeline joined it."""
        if self.pool is not None:
            self.pool.close()
        if self._connected and self.ray.is_initialized():
            self.ray.shutdown()

    def wait_ready(self) -> None:
        """Until the encode actors have loaded the model: the run's load stage, as a
        local run loads its model before its pipeline starts."""
        assert self.pool is not None
        with _cluster_errors():
            self.pool.wait_ready()

    def __call__(
        self,
        catalog: Any,
        encoder: Encoder,
        preparer: Preparer,
        todo: list[FileEntry],
        batch_size: int,
        workers: int,
        summary: Any,
        progress: Progress | None,
        updater: Any,
    ) -> None:
        """Run the stages (``workers`` is the local decode threads': unused). A failure on
        the cluster is one :class:`ClusterError`; the chunks written so far stay."""
        assert self.pool is not None
        with _cluster_errors():
            stream = self._stream_fused if self.pool.fused else self._stream
            stream(self.pool, catalog, encoder, preparer, todo, batch_size, summary, progress, updater)

    def _stream_fused(self, pool: EncodePool, catalog: Any, encoder: Encoder, preparer: Preparer,
                      todo: list[FileEntry], batch_size: int, summary: Any, progress: Progress | None,
                      updater: Any) -> None:
        """CPU actors: each part of a batch is read and encoded by one actor; the driver
        plans and writes the batches in order as their parts come back."""
        ray = self.ray
        moved = ray.put(frozenset(preparer.missing_by_hash))
        chunks = iter([todo[i : i + batch_size] for i in range(0, len(todo), batch_size)])
        running: deque[tuple[list[FileEntry], list[Any]]] = deque()
        depth = 3 * len(pool.actors)  # parts queued: every actor busy, two more each
        first_seen: set[str] = set()
        done = 0
        if progress:
            progress(0, len(todo))

        def submit() -> None:
            while pool.busy() < depth or not running:
                chunk = next(chunks, None)
                if chunk is None:
                    return
                known = [_known(preparer, e) for e in chunk]
                running.append((chunk, pool.read_encode(chunk, known, moved, preparer.max_pixels)))

        submit()
        while running:
            chunk, refs = running.popleft()
            with summary.clock.stage("model"):  # the driver waits on the actors' reading + encoding
                results = ray.get(refs)
            pool.finished(refs)
            submit()
            rows: list[Row] = []
            vectors = []
            shift = 0  # a part's pixel rows follow those of the parts before it
            for part_rows, part_vectors in results:
                rows += [(d, None if r is None else r + shift, i, why) for d, r, i, why in part_rows]
                if len(part_vectors):
                    vectors.append(part_vectors)
                    shift += len(part_vectors)
            batch = _plan(preparer, chunk, rows, first_seen)
            for p in batch:
                count_prepared(p, summary)
            picked = [p.pixels for p in batch if p.pixels is not None]
            encoded = np.concatenate(vectors)[picked] if picked else None
            write_encoded(catalog, [(batch, encoded)], summary, updater)
            done += len(batch)
            if progress:
                progress(done, len(todo))

    def _stream(
        self,
        pool: EncodePool,
        catalog: Any,
        encoder: Encoder,
        preparer: Preparer,
        todo: list[FileEntry],
        batch_size: int,
        summary: Any,
        progress: Progress | None,
        updater: Any,
    ) -> None:
        ray = self.ray
        read = ray.remote(read_chunk).options(
            num_returns=2, num_cpus=pool.read_cpus, max_retries=RETRIES, scheduling_strategy="SPREAD"
        )
        shared = (
            ray.put(frozenset(preparer.missing_by_hash)),
            ray.put(self._transform),
            encoder.image_size,
            preparer.max_pixels,
        )
        chunks = iter([todo[i : i + batch_size] for i in range(0, len(todo), batch_size)])
        reading: deque[tuple[list[FileEntry], Any, Any]] = deque()
        encoding: deque[tuple[list[Prepared], list[Any]]] = deque()
        first_seen: set[str] = set()
        done = 0
        if progress:
            progress(0, len(todo))

        def submit_read() -> None:
            chunk = next(chunks, None)
            if chunk is not None:
                known = [_known(preparer, e) for e in chunk]
                reading.append((chunk, *read.remote(chunk, known, *shared)))

        for _ in range(pool.read_window):
            submit_read()
        while reading or encoding:
            if reading:
                chunk, rows, pixels = reading.popleft()
                submit_read()
                with summary.clock.stage("decode"):  # the driver waits on the readers
                    read_rows = ray.get(rows)
                batch = _plan(preparer, chunk, read_rows, first_seen)
                for p in batch:
                    count_prepared(p, summary)
                encoding.append(
                    (batch, pool.encode(pixels, [p.pixels for p in batch if p.pixels is not None]))
                )
            while encoding and (not reading or len(encoding) > pool.queue or pool.ready(encoding[0][1])):
                batch, parts = encoding.popleft()
                with summary.clock.stage("model"):  # ... and on the encode actors
                    vectors = np.concatenate(ray.get(parts)) if parts else None
                pool.finished(parts)
                write_encoded(catalog, [(batch, vectors)], summary, updater)
                done += len(batch)
                if progress:
                    progress(done, len(todo))


@contextmanager
def _cluster_errors() -> Iterator[None]:
    """A failure on the cluster as one :class:`ClusterError` (a worker's own clipfind error,
    such as a model that does not load there, as itself)."""
    from ray.exceptions import RayError

    try:
        yield
    except RayError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, ClipfindError):
            raise cause from None
        lines = [ln for ln in str(exc).splitlines() if ln.strip()]
        raise ClusterError(
            f"the Ray run stopped: {lines[-1] if lines else type(exc).__name__}; "
            "finished batches are kept, run the same command again"
        ) from None


def _known(preparer: Preparer, entry: FileEntry) -> str | None:
    old = preparer.existing.get(entry.path)
    return old.content_hash if old is not None and old.status == ItemStatus.OK else None


def _plan(
    preparer: Preparer, chunk: list[FileEntry], rows: list[Row], first_seen: set[str]
) -> list[Prepared]:
    """The driver's decision per file, in walk order, from what a worker read. A decoded
    file's ``pixels`` is its row in the chunk's pixel array (still on the cluster)."""
    batch = []
    for entry, (digest, row, info, reason) in zip(chunk, rows, strict=True):
        if digest is None:
            p = preparer.unreadable(entry, reason or "cannot read")
        else:
            p = preparer.plan(entry, digest) or preparer.decoded(entry, digest, row, info, reason)
            if p.action in (NEW, CHANGED) and p.pixels is None:
                # the worker kept it undecoded for a vector that is no longer there: the
                # catalog changed under the run; the next run encodes it
                p = Prepared(
                    entry,
                    SKIPPED,
                    p.existing_id,
                    content_hash=digest,
                    retry=True,
                    reason="changed while indexing; run clipfind index again",
                )
            mark_repeat(p, first_seen)
        batch.append(p)
    return batch
