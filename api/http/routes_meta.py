"""``/health`` (no key needed), ``/info``, ``/roots``, ``POST /index`` and ``/jobs``."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool

from clipfind import __version__
from clipfind.api.http.deps import StateDep, require_api_key
from clipfind.api.http.models import HealthOut, IndexRequest, InfoOut, JobOut, RootOut
from clipfind.api.http.uploads import json_openapi, read_json

public = APIRouter(tags=["server"])
router = APIRouter(tags=["server"], dependencies=[Depends(require_api_key)])


# The views the web page shows besides search (``GET /info`` lists them); every build has
# both, and the list stays for clients that read it.
FEATURES = ("classify", "detect")


def features() -> list[str]:
    return list(FEATURES)


@public.get("/health", response_model=HealthOut, summary="Liveness (no API key needed)")
async def health() -> HealthOut:
    # async: answered on the event loop, never queued behind busy worker threads
    return HealthOut(version=__version__)


def roots_out(state: StateDep) -> list[RootOut]:
    return [RootOut(name=n, path=str(p), exists=p.is_dir())
            for n, p in state.jobs.roots.items()]


@router.get("/info", response_model=InfoOut, summary="The collection and this server")
def info(state: StateDep) -> InfoOut:
    """Model, counts, index kind, skipped files and why, and the server's limits."""
    doc = state.clip.info().as_dict()
    return InfoOut(**doc, version=__version__, auth_required=bool(state.settings.api_key),
                   max_upload_bytes=state.settings.max_upload_bytes,
                   max_pixels=state.settings.max_pixels, roots=roots_out(state),
                   features=features(), **text_precision(state))


def text_precision(state: StateDep) -> dict[str, str]:
    """What texts are encoded at and why (encoders other than ClipEncoder: nothing)."""
    engine = getattr(state.encoder, "engine", None)
    if engine is not None and engine.towers is not None and engine.choice.text:
        return {"text_precision": engine.choice.text, "engine_now": state.encoder.engine_label,
                "text_precision_note": "ONNX Runtime, checked against torch fp32 on this model"}
    model = getattr(state.encoder, "text_model", None)
    if model is None:
        return {}
    return {"text_precision": model.precision, "text_precision_note": model.note}


@router.get("/roots", response_model=list[RootOut], summary="Indexing roots configured here")
def roots(state: StateDep) -> list[RootOut]:
    return roots_out(state)


@router.post("/index", response_model=JobOut, status_code=202, summary="Index a configured root",
             openapi_extra=json_openapi(IndexRequest))
async def start_index(request: Request, state: StateDep) -> JobOut:
    """Start indexing a root configured on the server (by name; all when omitted) in
    the background. Poll ``GET /jobs/{id}``. Searches keep working meanwhile."""
    # Read here rather than by FastAPI: a body that is not UTF-8 is a 422 with a message
    body = await read_json(request, IndexRequest)
    job = await run_in_threadpool(state.jobs.start, body.root, allow_removals=body.allow_removals)
    return JobOut(**job.as_dict())


@router.get("/jobs", response_model=list[JobOut], summary="Recent jobs, newest first")
def list_jobs(state: StateDep) -> list[JobOut]:
    return [JobOut(**j.as_dict()) for j in state.jobs.list()]


@router.get("/jobs/{job_id}", response_model=JobOut, summary="A job's progress")
def get_job(job_id: str, state: StateDep) -> JobOut:
    return JobOut(**state.jobs.get(job_id).as_dict())
