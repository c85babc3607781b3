"""Zero-shot classification of one image (``POST /classify``) and label sets over the
whole collection (``POST/GET /labels/{set}``, ``GET /labels``, browsing by label)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from clipfind.api.http.deps import CollectionDep, StateDep
from clipfind.api.http.limits import SetName, Text, check_prompts, heavy
from clipfind.api.http.models import MAX_ID, Filter, HitOut
from clipfind.api.http.uploads import body_openapi, json_openapi, read_body, read_json
from clipfind.errors import NotFoundError, QueryError
from clipfind.templates import available_templates

router = APIRouter(tags=["labels"])
MAX_LABELS = 1000
Templates = Field(None, max_length=100, description=(
    "A shipped template set by name ('simple', 'imagenet', ...) as a one-element list, "
    "or your own templates, each with '{}' for the label. Default: 'simple'. Labels x "
    "templates is at most 4000 prompts."))
# A label set's name in a URL: 1-100 characters, no NUL (both backends store it alike).
SetParam = Annotated[SetName, PathParam(description="The label set's name (1-100 characters).")]


class LabelScoreOut(BaseModel):
    label: str
    score: float


class ClassifyRequest(BaseModel):
    """Labels to score one image against: an indexed item (``item``) in JSON, or an
    uploaded ``image`` file with the same fields as multipart form fields."""

    model_config = ConfigDict(extra="forbid")
    labels: list[Text] = Field(min_length=1, max_length=MAX_LABELS,
                               description="Each at most 200 characters.")
    item: int | None = Field(None, description="Id of an indexed item (no upload needed).")
    templates: list[Text] | None = Templates
    multi_label: bool = Field(False, description="Score each label independently.")
    top: int | None = Field(None, ge=1, le=MAX_LABELS, description="Keep the best N labels.")
    threshold: float | None = Field(None, ge=0, le=1, description="Minimum score to accept.")


class ClassifyOut(BaseModel):
    scores: list[LabelScoreOut] = Field(description="Every label's score, best first.")
    accepted: list[LabelScoreOut] = Field(description="The labels the image is given.")
    none_of_these: bool
    mode: str = Field(description="softmax (CLIP), sigmoid (SigLIP) or calibrated.")


class LabelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    labels: list[Text] = Field(min_length=1, max_length=MAX_LABELS,
                               description="Each at most 200 characters.")
    templates: list[Text] | None = Templates
    multi_label: bool = False
    threshold: float | None = Field(None, ge=0, le=1)
    top: int | None = Field(None, ge=1, le=MAX_LABELS)
    path: Filter | None = Field(None, description="Only items matching this glob.")


class LabelRunOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    model: str
    mode: str
    labels: list[str]
    scored: int
    labelled: int
    none_of_these: int
    counts: dict[str, int]
    seconds: float


class LabelSetOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    labels: list[str]
    templates: list[str]
    model: str
    params: dict[str, Any]
    created_at: str
    counts: dict[str, int] = Field(description="Items given each label.")
    labelled_items: int
    none_of_these: int


class LabelItemsOut(BaseModel):
    set: str
    label: str
    offset: int
    k: int
    total: int
    results: list[HitOut] = Field(description="Items with the label, best score first.")
    next_offset: int | None = None


BODY_MODELS = [ClassifyRequest, LabelRequest]


def templates_arg(value: list[str] | None, labels: list[str]) -> str | list[str] | None:
    """A shipped set's name, or literal templates: never a path (the server's files
    stay out of reach). At most MAX_PROMPTS prompts with ``labels``."""
    chosen: str | list[str] | None = value or None
    if value and len(value) == 1 and "{}" not in value[0]:
        if value[0] not in available_templates():
            raise QueryError(f"no template set {value[0]!r}; known: {', '.join(available_templates())}")
        chosen = value[0]
    check_prompts(labels, chosen)
    return chosen


def _classify(state: Any, req: ClassifyRequest, upload: bytes | None) -> ClassifyOut:
    if (req.item is None) == (upload is None):
        raise QueryError("give exactly one image: 'item' (an indexed item's id) or an "
                         "uploaded 'image' file (multipart)")
    templates = templates_arg(req.templates, req.labels)  # too many prompts: before decoding
    if upload is None and not 0 < req.item < MAX_ID:
        raise NotFoundError(f"item #{req.item} is not in the collection")
    result = state.clip.classify(upload if upload is not None else req.item, req.labels,
                                 templates=templates, multi_label=req.multi_label, top=req.top,
                                 threshold=req.threshold)
    return ClassifyOut(**result.as_dict())


def split_labels(fields: list[str]) -> list[str]:
    """Multipart ``labels`` fields, each possibly comma-separated, as one list (what is
    left empty is refused by the classifier with its own message)."""
    parts = [p.strip() for field in fields for p in field.split(",")]
    return [p for p in parts if p] or fields


@router.post("/classify", response_model=ClassifyOut, summary="Zero-shot classify one image",
             openapi_extra=body_openapi(ClassifyRequest, "JSON with 'item', or multipart "
                                        "with an 'image' file and the same fields."),
             dependencies=[Depends(heavy)])
async def classify(request: Request, state: StateDep) -> ClassifyOut:
    """Scores in transformers' shape, ``[{"label", "score"}]`` best first; ``accepted``
    is empty when the image is none of these."""
    req, upload = await read_body(request, ClassifyRequest, state.settings.max_upload_bytes)
    if request.headers.get("content-type", "").lower().startswith("multipart/"):
        # a form field says "cat,dog,car" as the CLI's --labels does: three labels
        req = req.model_copy(update={"labels": split_labels(req.labels)})
    return await run_in_threadpool(_classify, state, req, upload)


@router.get("/labels", response_model=list[LabelSetOut], summary="All label sets")
def list_sets(state: StateDep) -> list[LabelSetOut]:
    return [LabelSetOut(**s.as_dict()) for s in state.clip.label_sets()]


def _label(state: Any, set_name: str, body: LabelRequest) -> LabelRunOut:
    summary = state.clip.label(set_name, body.labels,
                               templates=templates_arg(body.templates, body.labels),
                               multi_label=body.multi_label, threshold=body.threshold,
                               top=body.top, path=body.path or None)
    return LabelRunOut(**summary.as_dict())


@router.post("/labels/{set_name}", response_model=LabelRunOut, summary="Label the collection",
             openapi_extra=json_openapi(LabelRequest), dependencies=[Depends(heavy)])
async def label_set(set_name: SetParam, request: Request, state: StateDep) -> LabelRunOut:
    """Score every indexed item against ``labels`` (from the stored vectors; nothing is
    decoded) and store the result as ``set_name``, replacing an earlier set of that name."""
    body = await read_json(request, LabelRequest)
    return await run_in_threadpool(_label, state, set_name, body)


@router.get("/labels/{set_name}", response_model=LabelSetOut, summary="A label set and its counts")
def get_set(set_name: SetParam, state: StateDep) -> LabelSetOut:
    return LabelSetOut(**state.clip.label_set(set_name).as_dict())


@router.get("/labels/{set_name}/items", response_model=LabelItemsOut,
            summary="Browse the items given a label")
def label_items(
    set_name: SetParam, collection: CollectionDep,
    label: Annotated[Text, Query(min_length=1)],
    k: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> LabelItemsOut:
    """Items given ``label`` by the set, best score first (ties by id: stable pages)."""
    total, rows = collection.catalog.labels.items_page(set_name, label, offset, k)  # 404: no set
    hits = [HitOut(id=r.id, score=round(float(r.score), 6), path=r.path, name=Path(r.path).name,
                   width=r.width, height=r.height, taken_at=r.taken_at, camera=r.camera,
                   thumbnail=f"/items/{r.id}/thumbnail", image=f"/items/{r.id}/image")
            for r in rows]
    nxt = offset + len(hits) if offset + len(hits) < total else None
    return LabelItemsOut(set=set_name, label=label, offset=offset, k=k, total=total,
                         results=hits, next_offset=nxt)
