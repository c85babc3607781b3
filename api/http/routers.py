"""Every router of the HTTP app, listed once. Imported plainly: a route module that
fails to import fails the app's start, loudly, instead of a feature vanishing."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from clipfind.api.http import routes_detect, routes_items, routes_labels, routes_search
from clipfind.api.http.models import IndexRequest, SearchRequest

# Behind the API key (when one is set): the data and the work.
SECURED: list[APIRouter] = [routes_search.router, routes_items.router, routes_labels.router,
                            routes_detect.router]
# Request bodies documented by hand in the schema (JSON or multipart).
BODY_MODELS: list[Any] = [SearchRequest, IndexRequest, *routes_labels.BODY_MODELS, *routes_detect.BODY_MODELS]
