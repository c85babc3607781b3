"""What the app holds while it runs: settings, the open collection, the encoder, the
job runner and the thumbnail cache. Built in the lifespan, closed at shutdown."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clipfind.api.http.jobs import JobManager
from clipfind.api.http.thumbs import ThumbnailCache
from clipfind.config import Settings
from clipfind.store.collection import Collection

log = logging.getLogger(__name__)

EncoderFactory = Callable[[Settings, Collection], Any]


def default_encoder(settings: Settings, collection: Collection) -> Any:
    from clipfind.encoder import ClipEncoder

    return ClipEncoder(collection.model_spec, device=settings.device,
                       batch_size=settings.batch_size, text_precision=settings.text_precision)


@dataclass
class AppState:
    settings: Settings
    collection: Collection
    encoder: Any
    jobs: JobManager
    thumbs: ThumbnailCache

    def close(self) -> None:
        self.jobs.close()
        self.collection.close()


def open_state(settings: Settings, encoder_factory: EncoderFactory | None = None) -> AppState:
    """Open the collection and load the model now, so the first request is not slow and a
    bad model spec or a model mismatch stops the server at startup with its message."""
    collection = Collection(settings)
    try:
        encoder = (encoder_factory or default_encoder)(settings, collection)
        collection.bind_model(encoder)  # loads the model; refuses a mismatched one
        collection.vector_index()
    except BaseException:
        collection.close()
        raise
    roots = [Path(r).expanduser().absolute() for r in settings.roots]
    jobs = JobManager(collection, encoder, roots)
    thumbs = ThumbnailCache(settings.cache_dir / "thumbnails", settings.max_pixels)
    log.info("serving collection %r (%s)", settings.collection, collection.stored_model)
    return AppState(settings, collection, encoder, jobs, thumbs)
