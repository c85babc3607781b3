"""The HTTP API and the web page: ``create_app(settings)`` builds a FastAPI app whose
lifespan opens the collection and loads the model (never at import time)."""

from clipfind.api.http.app import create_app

__all__ = ["create_app"]
