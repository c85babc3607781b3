"""``GET /search`` (query string) and ``POST /search`` (JSON, or multipart with an
example image). Both build the same terms and call :func:`search.search`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from clipfind.api.http.deps import StateDep
from clipfind.api.http.limits import MAX_TEXT, QueryText, Text, heavy
from clipfind.api.http.models import (
    DATE_HELP,
    DATE_PATTERN,
    MAX_ID,
    MAX_TERMS,
    Filter,
    HitOut,
    SearchOut,
    SearchRequest,
)
from clipfind.api.http.uploads import body_openapi, read_body
from clipfind.errors import NotFoundError, QueryError
from clipfind.library import Clipfind
from clipfind.search import Filters, SearchPage, Term, parse_date
from clipfind.search.query import parse_query, parse_term

router = APIRouter(tags=["search"])
MAX_WEIGHT = 100.0


def build_api_terms(req: SearchRequest, upload: bytes | None = None) -> list[Term]:
    """Terms from a request. Text is never read as a file path; ids and weights are
    checked so nothing odd reaches the catalog or the vector maths."""
    terms = parse_query(req.q, allow_files=False) if req.q else []
    terms += [Term(1.0, item_id=i) for i in req.items]
    terms += [Term(-1.0, item_id=i) for i in req.not_items]
    terms += [parse_term(n, -1.0, allow_files=False) for n in req.not_ if n.strip()]
    if upload is not None:
        terms.append(Term(req.image_weight, image_bytes=upload))
    if len(terms) > 4 * MAX_TERMS:
        raise QueryError(f"too many query terms ({len(terms)}); at most {4 * MAX_TERMS}")
    for term in terms:
        if not math.isfinite(term.weight) or abs(term.weight) > MAX_WEIGHT:
            raise QueryError(f"term weight {term.weight:g} is out of range (|w| <= {MAX_WEIGHT:g})")
        if term.item_id is not None and not 0 < term.item_id < MAX_ID:
            raise NotFoundError(f"item #{term.item_id} is not in the collection")
        if term.text is not None and len(term.text) > MAX_TEXT:
            raise QueryError(f"a query text is {len(term.text)} characters; each text term may "
                             f"have at most {MAX_TEXT} characters (the model reads 77 tokens)")
    if not terms:
        raise QueryError("the query is empty: give q (text), items, or an example image")
    return terms


def filters_of(req: SearchRequest) -> Filters:
    return Filters(path=req.path or None, after=parse_date(req.after),
                   before=parse_date(req.before, end=True), label=req.label or None)


def page_out(page: SearchPage) -> SearchOut:
    hits = [
        HitOut(id=h.id, score=h.score, path=h.path, name=Path(h.path).name, width=h.width,
               height=h.height, taken_at=h.taken_at, camera=h.camera,
               thumbnail=f"/items/{h.id}/thumbnail", image=f"/items/{h.id}/image")
        for h in page.hits
    ]
    full = len(page.hits) == page.k
    return SearchOut(query=page.query, offset=page.offset, k=page.k, results=hits,
                     next_offset=page.offset + page.k if full else None)


def run(clip: Clipfind, req: SearchRequest, upload: bytes | None = None) -> SearchOut:
    terms = build_api_terms(req, upload)
    page = clip.search(terms, k=req.k, offset=req.offset, filters=filters_of(req),
                       min_score=req.min_score)
    return page_out(page)


@router.get("/search", response_model=SearchOut, summary="Search by text and item ids",
            dependencies=[Depends(heavy)])
def search_get(
    state: StateDep,
    q: Annotated[QueryText | None, Query(description=(
        "Text or the query syntax: '2:dog + #42 - leash'."))] = None,
    not_: Annotated[list[Text], Query(alias="not", max_length=MAX_TERMS,
                                      description="Texts to steer away from; repeatable.")] = [],  # noqa: B006
    item: Annotated[list[int], Query(max_length=MAX_TERMS, description=(
        "Ids of indexed items to search by example ('more like this'); repeatable."))] = [],  # noqa: B006
    k: Annotated[int, Query(ge=1, le=200)] = 20,
    offset: Annotated[int, Query(ge=0, le=10_000)] = 0,
    min_score: Annotated[float | None, Query(ge=-1, le=1)] = None,
    path: Annotated[Filter | None, Query(description="Glob on the full path.")] = None,
    after: Annotated[str | None, Query(max_length=40, pattern=DATE_PATTERN,
                                       description=f"Taken on or after: {DATE_HELP}")] = None,
    before: Annotated[str | None, Query(max_length=40, pattern=DATE_PATTERN,
                                        description=f"Taken on or before: {DATE_HELP}")] = None,
    label: Annotated[Filter | None, Query(max_length=301, description="LABEL or SET:LABEL.")] = None,
) -> SearchOut:
    """Rank the collection's images. At least one of ``q``, ``not`` or ``item`` must be
    given (else 422). Pages are stable (ties by id); filters apply before top-k, so a
    filtered page is full of matching items."""
    try:
        req = SearchRequest(q=q, not_=not_, items=item, k=k, offset=offset, min_score=min_score,
                            path=path, after=after, before=before, label=label)
    except ValidationError as exc:  # the same rules as the body: a 422, never a 500
        raise RequestValidationError(exc.errors(include_url=False)) from exc
    return run(state.clip, req)


@router.post(
    "/search", response_model=SearchOut, summary="Search by a mix of texts, items and an image",
    openapi_extra=body_openapi(SearchRequest, "JSON, or the same fields as multipart form "
                               "fields with an 'image' file part to search by example. At "
                               "least one of q, not, items, not_items or image."),
    dependencies=[Depends(heavy)],
)
async def search_post(request: Request, state: StateDep) -> SearchOut:
    """Weighted mixes, negatives, item ids, and search by an uploaded example image."""
    req, upload = await read_body(request, SearchRequest, state.settings.max_upload_bytes)
    return await run_in_threadpool(run, state.clip, req, upload)
