"""What the app holds while it runs: the :class:`~clipfind.library.Clipfind` facade
(settings, the open collection, the encoder), the job runner and the thumbnail cache.
Built in the lifespan, closed at shutdown."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from clipfind.api.http.jobs import JobManager
from clipfind.api.http.thumbs import ThumbnailCache
from clipfind.config import Settings
from clipfind.encoding import Encoder
from clipfind.library import Clipfind
from clipfind.store.collection import Collection

log = logging.getLogger(__name__)

EncoderFactory = Callable[[Settings, Collection], Encoder]


@dataclass
class AppState:
    settings: Settings
    collection: Collection
    encoder: Encoder
    jobs: JobManager
    thumbs: ThumbnailCache
    clip: Clipfind  # what the routes call; collection and encoder are its own

    def close(self) -> None:
        self.jobs.close()
        self.clip.close()


def open_state(settings: Settings, encoder_factory: EncoderFactory | None = None) -> AppState:
    """Open the collection and load the model now, so the first request is not slow and a
    bad model spec or a model mismatch stops the server at startup with its message."""
    clip = Clipfind(settings, encoder_factory=encoder_factory)
    try:
        encoder = clip.bind()  # loads the model; refuses a mismatched one
        encoder.encode_texts(["a photo"])  # the text tower (int8 on a CPU) now, not in a query
        collection = clip.collection
        collection.vector_index()
    except BaseException:
        clip.close()
        raise
    roots = [Path(r).expanduser().absolute() for r in settings.roots]
    jobs = JobManager(clip, roots)
    thumbs = ThumbnailCache(settings.cache_dir / "thumbnails", settings.max_pixels)
    log.info("serving collection %r (%s)", settings.collection, collection.stored_model)
    return AppState(settings, collection, encoder, jobs, thumbs, clip)
