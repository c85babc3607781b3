"""A collection: one catalog, the FAISS index derived from it, and the model identity
that ties the two to one embedding space."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from clipfind.config import DEFAULT_MODEL, Settings
from clipfind.encoding import Encoder
from clipfind.errors import CollectionError, ModelMismatchError, StorageError
from clipfind.store.faults import existing_ancestor
from clipfind.store.guards import check_catalog_file, check_fresh_catalog, save_or_warn
from clipfind.store.quick import open_catalog
from clipfind.store.vectors import VectorIndex, choose_kind

if TYPE_CHECKING:  # a one-shot query opens no SQLAlchemy catalog (clipfind.store.quick)
    from clipfind.store.catalog import Catalog

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IndexChanges:
    """What one committed write did to the vectors: ``upserts`` maps item ids to their
    new vector bytes, ``removed`` lists ids that no longer have one; ``generation`` is
    the catalog generation the write committed."""

    generation: int
    upserts: dict[int, bytes] = field(default_factory=dict)
    removed: tuple[int, ...] = ()


class IndexUpdater:
    """Applies a run's writes to an in-memory index as they commit. The index stays
    searchable throughout (its generation follows the catalog's); when a write's
    generation is not the next one, another writer was at work and the updater gives
    up, which makes :meth:`Collection.finish_update` rebuild from the catalog."""

    def __init__(self, index: VectorIndex | None) -> None:
        self.index = index

    def apply(self, changes: IndexChanges | None) -> None:
        index = self.index
        if index is None or changes is None:
            return
        if changes.generation != index.generation + 1:
            log.info("catalog changed by another writer: the index will be rebuilt")
            self.index = None
            return
        gone = [i for i in changes.removed if i not in changes.upserts]
        if gone:
            index.remove(np.asarray(gone, dtype=np.int64))
        if changes.upserts:
            ids = np.fromiter(changes.upserts, dtype=np.int64, count=len(changes.upserts))
            vecs = np.frombuffer(b"".join(changes.upserts.values()), dtype=np.float32)
            if vecs.size != len(ids) * index.dim:  # another model's width: start afresh
                self.index = None
                return
            index.add(ids, vecs.reshape(len(ids), -1))
        index.generation = changes.generation

PROBE_TEXT = "a photo of a dog on a beach"
_SAME_MODEL_COSINE = 0.99


class Collection:
    """Opens (creating if needed) the collection named by ``settings``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        try:
            settings.collection_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a read-only or missing data dir, not a --db-url problem
            raise StorageError(
                f"Cannot create the collection folder {settings.collection_dir}: "
                f"{exc.strerror or exc}. Make {existing_ancestor(settings.collection_dir)} "
                "writable, or choose another --data-dir (CLIPFIND_DATA_DIR)."
            ) from exc
        check_catalog_file(settings.database_url, settings.index_path)
        self.catalog: Catalog = open_catalog(settings.database_url, in_data_dir=settings.db_url is None)
        self._index: VectorIndex | None = None
        self._index_lock = threading.Lock()
        self._live: IndexUpdater | None = None  # a run of writes in this process
        try:
            check_fresh_catalog(self.catalog.shown_url, self.catalog.generation, settings.index_path)
        except StorageError:
            self.catalog.close()
            raise
        self._claim_database()

    def _claim_database(self) -> None:
        """One database holds one collection: two collections given the same --db-url
        would mix their items, so the second one is refused with a way out."""
        owner = self.catalog.get_meta("collection")
        if owner is None:  # another process may claim a fresh database at the same moment
            from clipfind.store import meta

            with self.catalog.session() as session:
                meta.ensure(session, "collection", self.settings.collection)
            owner = self.catalog.get_meta("collection")
        if owner != self.settings.collection:
            url = self.catalog.shown_url
            self.catalog.close()
            raise CollectionError(
                f"The database {url} holds collection '{owner}', not "
                f"'{self.settings.collection}'; give each collection its own --db-url "
                "(or CLIPFIND_DB_URL), or use --collection " + owner + "."
            )

    def close(self) -> None:
        self.catalog.close()

    # -- model identity ------------------------------------------------------------
    @property
    def stored_model(self) -> str | None:
        return self.catalog.get_meta("model_spec")

    @property
    def stored_dim(self) -> int | None:
        value = self.catalog.get_meta("model_dim")
        return int(value) if value else None

    @property
    def model_spec(self) -> str:
        """The model to use: the one asked for, else the collection's own, else default."""
        return self.settings.model or self.stored_model or DEFAULT_MODEL

    def bind_model(self, encoder: Encoder, reembed: bool = False) -> None:
        """Check that ``encoder`` embeds into this collection's space; record it on first
        use. ``reembed`` adopts the new model and forgets every stored vector."""
        # The model as loaded when the encoder offers it (ClipEncoder.probe_texts): an
        # image-only command then never builds the int8 text tower just for this check.
        encode = getattr(encoder, "probe_texts", None) or encoder.encode_texts  # type: ignore[attr-defined]
        probe = encode([PROBE_TEXT])[0]
        stored = self.catalog.get_meta("model_probe")
        mine = probe.astype(np.float32).tobytes().hex()
        if stored is None and not reembed:
            # A fresh collection: two runs of two models may get here at once. The probe
            # row is claimed by an insert that only the first transaction makes (the other
            # waits for it to commit and then reads the winner's), so exactly one binds.
            from clipfind.store import meta

            with self.catalog.session() as session:
                stored = meta.claim(session, "model_probe", mine)
                if stored == mine:
                    meta.upsert(session, "model_spec", encoder.spec)  # type: ignore[attr-defined]
                    meta.upsert(session, "model_dim", str(probe.shape[0]))
            if stored == mine:
                return
        if stored is not None and not reembed:
            old = np.frombuffer(bytes.fromhex(stored), dtype=np.float32)
            same = old.shape == probe.shape and float(old @ probe) >= _SAME_MODEL_COSINE
            if not same:
                raise ModelMismatchError(
                    f"Collection '{self.settings.collection}' was indexed with model "
                    f"{self.stored_model!r} (dim {self.stored_dim}); "
                    f"{encoder.spec!r} embeds into another space. "  # type: ignore[attr-defined]
                    "Search it with its own model (omit --model), or re-index with "
                    "`clipfind index PATH --reembed` to switch models."
                )
            return
        if stored is not None and reembed:
            log.info("re-embedding collection with %s", encoder.spec)  # type: ignore[attr-defined]
            self.catalog.reset_vectors()
        with self.catalog.session() as session:
            self.catalog.set_meta("model_spec", encoder.spec, session)  # type: ignore[attr-defined]
            self.catalog.set_meta("model_dim", str(probe.shape[0]), session)
            self.catalog.set_meta("model_probe", mine, session)

    @contextmanager
    def writing(self, roots: Sequence[Path] | None = None, what: str = "index run") -> Iterator[None]:
        """Claim the items under ``roots`` (``None``: every item) for a run of writes, across
        processes (the CLI and a server's index job alike), or raise
        :class:`CollectionBusyError` when another writer's claim overlaps. On PostgreSQL,
        runs on disjoint folders proceed together; on SQLite, which takes one writer at a
        time for the whole file, every item run claims every item."""
        from clipfind.store.locks import Claim, writer_lock

        if roots is None or self.catalog.engine.dialect.name != "postgresql":
            claim = Claim(what, all_items=True)
        else:
            claim = Claim.items_under(list(roots), what)
        with writer_lock(self.settings.collection_dir, self.catalog.engine, self.settings.collection, claim):
            yield

    @contextmanager
    def writing_texts(self) -> Iterator[None]:
        """Claim the texts (``index-texts``): one text writer at a time; item writers go on."""
        from clipfind.store.locks import Claim, writer_lock

        claim = Claim("text index run", texts=True)
        with writer_lock(self.settings.collection_dir, self.catalog.engine, self.settings.collection, claim):
            yield

    # -- the FAISS index -------------------------------------------------------------
    def index_updater(self) -> IndexUpdater:
        """Follow a run of writes (an index run, ``forget``) with the current index, so the
        run ends with a save instead of a rebuild from the catalog."""
        updater = IndexUpdater(self.vector_index())
        self._live = updater
        return updater

    @contextmanager
    def updating(self) -> Iterator[IndexUpdater]:
        """``with collection.updating() as updater:`` around a run of writes: the index
        follows them, is saved at the end, and an error leaves no live index behind
        (the next use rebuilds from the catalog, which holds every committed batch)."""
        updater = self.index_updater()
        try:
            yield updater
        except BaseException:
            if self._live is updater:
                self._live = None
            raise
        self.finish_update(updater)

    def finish_update(self, updater: IndexUpdater) -> VectorIndex:
        """Save the index an :class:`IndexUpdater` kept in step with the catalog; rebuild
        instead when it lost step (another writer) or the collection outgrew its kind."""
        if self._live is updater:
            self._live = None
        index = updater.index
        if index is None or index.generation != self.catalog.generation:
            return self.vector_index()
        fits = getattr(index, "fits", None)
        if fits is not None and not fits(len(index)):
            with self._index_lock:
                self._index = self.rebuild_index()
                return self._index
        with self._index_lock:
            save_or_warn(index, self.settings.index_path, self._generation_now)
            self._index = index
        return index

    def vector_index(self) -> VectorIndex:
        """The index for the catalog's current generation: loaded from disk when fresh,
        otherwise rebuilt from the catalog and saved. While a run of writes in this
        process keeps its index in step (an index job in the server), searches use that
        index: at most one batch behind, instead of a rebuild per committed batch."""
        live = self._live
        if live is not None and live.index is not None:
            return live.index
        generation = self.catalog.generation
        with self._index_lock:
            if self._index is not None and self._index.generation == generation:
                return self._index
            loaded = VectorIndex.load(self.settings.index_path)
            if loaded is not None and loaded.generation == generation:
                self._index = loaded
            else:
                self._index = self.rebuild_index()
            return self._index

    def _generation_now(self) -> int | None:
        """The catalog's generation, read as an index is saved (``None``: unreadable now)."""
        try:
            return self.catalog.generation
        except StorageError:
            return None

    def rebuild_index(self) -> VectorIndex:
        """Build from the catalog and save; tagged with the generation it truly holds
        (read in the same snapshot as the vectors: another process may commit meanwhile)."""
        id_chunks, vec_chunks = [], []
        with self.catalog.snapshot() as session:
            generation = self.catalog.generation_in(session)
            for ids, vecs in self.catalog.iter_vectors(session=session):
                id_chunks.append(ids)
                vec_chunks.append(vecs)
        dim = self.stored_dim or (vec_chunks[0].shape[1] if vec_chunks else 0)
        if not dim:
            dim = 1
        ids = np.concatenate(id_chunks) if id_chunks else np.zeros(0, np.int64)
        vecs = np.concatenate(vec_chunks) if vec_chunks else np.zeros((0, dim), np.float32)
        log.info("building %s index over %d vectors", choose_kind(len(ids)), len(ids))
        index = VectorIndex.build(ids, vecs, dim, generation=generation,
                                  budget=self.settings.index_memory, folder=self.settings.collection_dir)
        save_or_warn(index, self.settings.index_path, self._generation_now)
        return index
