"""The Python API: one object does everything clipfind does.

This is the public entry point, above the runtime layers: it is the one module of the
``clipfind`` foundation package that calls into :mod:`clipfind.indexer` and
:mod:`clipfind.search` (lazily, inside its methods, so ``import clipfind`` stays cheap).
The CLI, the HTTP app and the demo build a :class:`Clipfind` and call its methods, so
they answer the same for the same input. Example (runs as it stands, with the reference
model that ships with clipfind)::

    import tempfile
    from pathlib import Path

    from PIL import Image

    import clipfind
    from clipfind.training.reference import shipped_reference_model

    folder = Path(tempfile.mkdtemp())
    for colour in ("red", "blue", "yellow"):
        Image.new("RGB", (64, 64), colour).save(folder / f"{colour}.png")
    model = f"local-dir:{shipped_reference_model()}"
    with clipfind.open(collection="demo", model=model, data_dir=folder / "data") as cf:
        print(cf.index([folder]).added)                   # 3
        page = cf.search("a red square", k=2)
        print([Path(hit.path).name for hit in page.hits])
        print(cf.classify(folder / "blue.png", ["red", "blue"]).scores[0].label)
        print(cf.info().indexed)                          # 3

Results are frozen dataclasses with ``as_dict()``: :class:`~clipfind.search.SearchPage`
of :class:`~clipfind.search.Hit`, :class:`Classification` of :class:`LabelScore`,
:class:`DetectResult` of :class:`Detection`, :class:`IndexSummary`, ...
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from clipfind.config import Settings
from clipfind.library_args import (
    default_encoder,
    detect_queries,
    filters_of,
    item_id,
    paths_of,
    picture_of,
    settings_of,
    terms_of,
    vector_of,
)

if TYPE_CHECKING:
    from PIL import Image

    from clipfind.encoding import Encoder
    from clipfind.indexer.run import IndexSummary
    from clipfind.search.detect.detector import Detection
    from clipfind.search.detect.picture import DetectResult
    from clipfind.search.engine import SearchPage
    from clipfind.search.filters import Filters
    from clipfind.search.info import CollectionInfo
    from clipfind.search.query import Term
    from clipfind.search.texts import TextHit, TextIndexSummary
    from clipfind.search.zeroshot.classify import Classification
    from clipfind.search.zeroshot.labeling import LabelRunSummary, LabelSetInfo
    from clipfind.store.collection import Collection

    # A picture: a file path, an indexed item (int, "#N" or "id:N"), a PIL image or bytes.
    ImageRef = str | os.PathLike[str] | int | Image.Image | bytes
    EncoderFactory = Callable[[Settings, Collection], Encoder]
    Progress = Callable[[int, int], None]

__all__ = ["Clipfind", "open"]


def open(
    collection: str | None = None, *, model: str | None = None,
    data_dir: str | os.PathLike[str] | None = None, settings: Settings | None = None,
    encoder: Encoder | None = None, **options: Any,
) -> Clipfind:
    """Open a collection (created on first use). ``options`` are :class:`Settings`
    fields (``db_url``, ``device``, ``batch_size``, ``text_precision``, ...); anything
    not given comes from ``CLIPFIND_*`` environment variables, then the defaults."""
    return Clipfind(settings, encoder=encoder, collection=collection, model=model,
                    data_dir=data_dir, **options)


class Clipfind:
    """One collection and its model. Opening is cheap: the catalog opens on first use,
    the model loads on the first encode. Use it in a ``with`` block or call
    :meth:`close`. Methods are safe to call from several threads (the HTTP app does)."""

    def __init__(self, settings: Settings | None = None, *, encoder: Encoder | None = None,
                 encoder_factory: EncoderFactory | None = None, **options: Any) -> None:
        self.settings = settings_of(settings, options)
        self._encoder = encoder
        self._factory = encoder_factory
        self._collection: Collection | None = None
        self._lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------
    @property
    def collection(self) -> Collection:
        """The store: catalog + FAISS index (opened on first use)."""
        if self._collection is None:
            with self._lock:
                if self._collection is None:
                    from clipfind.store.collection import Collection

                    self._collection = Collection(self.settings)
        return self._collection

    @property
    def encoder(self) -> Encoder:
        """The model: ``--model``, else the collection's own, else the default. Built on
        first use; its weights load on the first encode."""
        if self._encoder is None:
            # one picture classified or detected needs no collection: none is created
            collection = self.collection if self.exists() else None
            with self._lock:
                if self._encoder is None:
                    self._encoder = (self._factory or default_encoder)(self.settings, collection)
        return self._encoder

    def exists(self) -> bool:
        """Whether the collection is there to read: open, or its SQLite catalog on disk
        (with a ``db_url`` only the database knows, so it counts as there)."""
        if self._collection is not None or self.settings.db_url:
            return True
        return (self.settings.collection_dir / "catalog.db").is_file()

    def _existing(self) -> Collection:
        """The collection for a reader: a missing one is an error, never created."""
        if not self.exists():
            from clipfind.errors import NotFoundError

            raise NotFoundError(
                f"no collection {self.settings.collection!r} in {self.settings.data_dir}: "
                "`clipfind index FOLDER` creates it (or give --collection / --data-dir)")
        return self.collection

    def bind(self) -> Encoder:
        """Load the model now and check it embeds into the collection's space (a server
        does this at startup, so a wrong model stops it there). Returns the encoder."""
        self.collection.bind_model(self.encoder)
        return self.encoder

    def close(self) -> None:
        if self._collection is not None:
            self._collection.close()
            self._collection = None

    def __enter__(self) -> Clipfind:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Clipfind collection={self.settings.collection!r} data_dir={str(self.settings.data_dir)!r}>"

    # -- indexing ----------------------------------------------------------------------
    def index(self, paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], *,
              exclude: Iterable[str] = (), reembed: bool = False, prune: bool = True,
              batch_size: int | None = None, workers: int | None = None,
              progress: Progress | None = None, allow_removals: bool = False,
              confirm: Callable[[str], bool] | None = None, ray: str | None = None) -> IndexSummary:
        """Bring the collection up to date with the images under ``paths``: new and
        changed files are encoded, moved ones keep their vectors, gone ones leave
        (``prune=False`` keeps them). ``reembed`` switches the collection to this model.
        An emptied root, a root on another device, or most of a root at once is removed
        only with ``allow_removals`` (or, for the last, when ``confirm(question)`` agrees).
        ``ray`` (``"auto"``, ``"HOST:PORT"``, ``"ray://HOST:PORT"``) decodes and encodes on
        that running Ray cluster (``clipfind[ray]``; docs/indexing.md)."""
        from clipfind.indexer import index_paths
        from clipfind.indexer.ray_pipeline import on_ray

        roots = paths_of(paths)
        if not self.exists():  # a new collection: a missing path is a typo, and creates nothing
            for root in roots:
                if not os.path.lexists(root):
                    from clipfind.errors import NotFoundError

                    raise NotFoundError(f"{root} does not exist: nothing was indexed or created")
        with on_ray(ray, self.settings, self.encoder if ray else None) as pipeline:
            return index_paths(self.collection, self.encoder, roots, exclude,
                               batch_size=batch_size, workers=workers, reembed=reembed,
                               prune=prune, progress=progress, allow_removals=allow_removals,
                               confirm=confirm, pipeline=pipeline)

    def forget(self, paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> int:
        """Drop the items under ``paths`` (the files are not touched); how many went."""
        from clipfind.indexer.writer import remove_missing

        coll = self._existing()
        roots = paths_of(paths)
        with coll.writing(roots):  # not while an index run writes there (CollectionBusyError)
            ids = [s.id for s in coll.catalog.states_under(roots).values()]
            with coll.updating() as updater:
                updater.apply(remove_missing(coll.catalog, ids))
        return len(ids)

    def index_texts(self, texts: Sequence[str | tuple[str | None, str]] | str | os.PathLike[str],
                    *, replace: bool = False) -> TextIndexSummary:
        """Add texts for image → text search: a list of texts or ``(key, text)`` pairs,
        or a file (one per line, CSV with a ``text`` column, or JSON Lines)."""
        from clipfind.search.texts import index_texts, read_texts_file

        if isinstance(texts, str | os.PathLike):
            pairs = read_texts_file(Path(texts))
        else:
            pairs = [(None, t) if isinstance(t, str) else t for t in texts]
        return index_texts(self.collection, self.encoder, pairs, replace=replace)

    # -- search ------------------------------------------------------------------------
    def search(self, query: str | Sequence[Term] | None = None, *, images: Sequence[str] = (),
               negatives: Sequence[str] = (), k: int = 20, offset: int = 0,
               filters: Filters | None = None, path: str | None = None, after: Any = None,
               before: Any = None, label: str | None = None,
               min_score: float | None = None) -> SearchPage:
        """Rank the collection's images. ``query`` is text or the query syntax
        (``"2:dog + beach.jpg - leash + #42"``) or parsed terms; ``images`` are example
        files or ``#N``; ``negatives`` steer away. Filters: a path glob, capture dates
        (``"2021-06"``, a date) and a label (``LABEL`` or ``SET:LABEL``)."""
        from clipfind.search.engine import search

        filters = filters_of(filters, path, after, before, label)
        return search(self._existing(), self.encoder, terms_of(query, images, negatives), k=k,
                      offset=offset, filters=filters, min_score=min_score)

    def search_texts(self, query: str | Sequence[Term] | None = None, *,
                     images: Sequence[str] = (), negatives: Sequence[str] = (),
                     k: int = 20) -> list[TextHit]:
        """Rank the collection's texts (:meth:`index_texts`) for a query."""
        from clipfind.search.query import query_vector
        from clipfind.search.texts import search_texts
        from clipfind.search.validate import check_terms

        terms = terms_of(query, images, negatives)
        check_terms(terms, self._existing().catalog, self.settings.max_pixels)
        encoder = self.bind()
        vec = query_vector(terms, encoder, self.collection.catalog, self.settings.max_pixels)
        return search_texts(self.collection, vec, k)

    def locate(self, page: SearchPage, texts: str | Sequence[str] = (), *,
               threshold: float | None = None, max_boxes: int = 5, detector: str | None = None,
               example: ImageRef | None = None) -> dict[int, list[Detection]]:
        """Boxes for ``texts`` (or things like ``example``) in each hit of ``page``, by
        item id (``search --locate``); the same detectors and size policy as
        :meth:`detect`. A hit whose file is unreadable gets none."""
        from clipfind.search.detect.locate import locate_hits

        found_by = self.detector(detector, example)
        wanted = detect_queries(texts, found_by)
        return locate_hits(None, page.hits, wanted, threshold, max_boxes,
                           self.settings.max_pixels, found_by, catalog=self._existing().catalog)

    # -- zero-shot ---------------------------------------------------------------------
    def classify(self, image: ImageRef, labels: str | Sequence[str], *,
                 templates: str | Sequence[str] | None = None, multi_label: bool = False,
                 top: int | None = None, threshold: float | None = None,
                 background: Sequence[str] | None = None) -> Classification:
        """Score ``labels`` (a list, or ``"cat,dog,car"``) for one picture: ``scores``
        best first in transformers' ``[{"label", "score"}]`` shape, and ``accepted``,
        the labels it is given (empty: none of these). ``background``: the "none of
        these" prompts a label must beat (default: object, thing, something)."""
        from clipfind.search.zeroshot.classify import classify_vector
        from clipfind.search.zeroshot.prompts import DEFAULT_BACKGROUND, parse_labels

        names = parse_labels(labels)
        vector = vector_of(self, image)
        return classify_vector(self.encoder, vector, names, templates, multi_label, top,
                               threshold, DEFAULT_BACKGROUND if background is None else background)

    def label(self, name: str, labels: str | Sequence[str], *,
              templates: str | Sequence[str] | None = None, multi_label: bool = False,
              threshold: float | None = None, top: int | None = None, path: str | None = None,
              background: Sequence[str] | None = None,
              progress: Progress | None = None) -> LabelRunSummary:
        """Label every indexed item (or those matching the ``path`` glob) from its
        stored vector and store the result as the label set ``name`` (replacing one of
        that name); ``search(label=...)`` then filters by it."""
        from clipfind.search.zeroshot.labeling import label_collection
        from clipfind.search.zeroshot.prompts import DEFAULT_BACKGROUND, parse_labels

        return label_collection(
            self._existing(), self.encoder, parse_labels(labels), name=name, templates=templates,
            multi_label=multi_label, threshold=threshold, top=top, path=path,
            background=DEFAULT_BACKGROUND if background is None else background,
            progress=progress)

    def label_sets(self) -> list[LabelSetInfo]:
        from clipfind.search.zeroshot.labeling import list_label_sets

        return list_label_sets(self._existing().catalog)

    def label_set(self, name: str) -> LabelSetInfo:
        """A stored label set with its counts (``NotFoundError`` if there is none)."""
        from clipfind.search.zeroshot.labeling import label_set_summary

        return label_set_summary(self._existing().catalog, name)

    def delete_label_set(self, name: str) -> None:
        from clipfind.search.zeroshot.labeling import delete_label_set

        delete_label_set(self._existing().catalog, name)

    def export_label_set(self, name: str, fmt: str, out: TextIO) -> int:
        """Write a label set to ``out`` as ``csv``, ``jsonl`` or ``coco``; rows written."""
        from clipfind.search.zeroshot.label_export import export_label_set

        return export_label_set(self._existing().catalog, name, fmt, out)

    def detect(self, image: ImageRef, queries: str | Sequence[str] = (), *,
               threshold: float | None = None, max_boxes: int = 10, detector: str | None = None,
               example: ImageRef | None = None) -> DetectResult:
        """Boxes where ``queries`` appear in one picture, best first, in the picture's
        own pixels. Large pictures are detected at 1,024 px on the long side
        (:mod:`clipfind.search.detect.picture`), the same in every shell. ``detector``:
        "clip", "owlvit" or "owlv2" (default: the ``detector`` setting); ``example``: a
        picture of the thing to find, instead of ``queries`` (OWL's image-guided detection)."""
        from clipfind.search.detect.picture import detect_picture

        found_by = self.detector(detector, example)
        wanted = detect_queries(queries, found_by)
        picture = picture_of(self, image)
        return detect_picture(None, picture, wanted, threshold, max_boxes, found_by)

    def detector(self, detector: str | None = None, example: ImageRef | None = None) -> Any:
        """The detector :meth:`detect` uses (search/detect/choice.py): CLIP on the
        collection's model, an OWL model (loaded once per process), or OWL by ``example``."""
        from clipfind.search.detect.choice import detector_kind, make_detector

        kind = detector_kind(detector, self.settings)
        encoder = self.encoder if kind == "clip" and example is None else None
        if example is None:
            return make_detector(detector, self.settings, encoder)
        label = f"#{item_id(example)}" if item_id(example) is not None else (
            Path(example).name if isinstance(example, (str, os.PathLike)) else "example")
        return make_detector(detector, self.settings, encoder, picture_of(self, example).image, label)

    # -- the collection ----------------------------------------------------------------
    def info(self) -> CollectionInfo:
        """Model, counts, index kind and skipped files (loads no model)."""
        from clipfind.search.info import CollectionInfo, collection_info

        return CollectionInfo.from_dict(collection_info(self._existing()))
