"""Pydantic models at the HTTP boundary: request bodies and every response shape, so
``/docs`` and the OpenAPI schema say exactly what goes in and comes out."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    field_validator,
)

from clipfind.api.http.limits import MAX_ID, QueryText, Text, no_nul

__all__ = ["MAX_ID"]  # re-exported: the routes check ids against it
MAX_TERMS = 20
# YYYY, YYYY-MM, YYYY-MM-DD or an ISO 8601 date-time (what search.filters.parse_date reads)
DATE_PATTERN = r"^\d{4}(-\d{2}(-\d{2}([T ][^\x00]*)?)?)?$"
DATE_HELP = ("YYYY, YYYY-MM, YYYY-MM-DD or an ISO 8601 date-time; a partial date "
             "covers its whole year or month.")
# A path glob or a LABEL / SET:LABEL filter: longer than one text, never NUL.
Filter = Annotated[str, Field(max_length=1000, json_schema_extra={"pattern": "^[^\x00]*$"}),
                   AfterValidator(no_nul)]


def _aware(value: datetime) -> datetime:
    return value.astimezone() if value.tzinfo is None else value


# Times the server took itself (naive local in the catalog): sent with their UTC offset,
# so they are RFC 3339 date-times.
ServerTime = Annotated[datetime, AfterValidator(_aware)]
# A camera's EXIF time has no zone at all: sent as it was recorded, without an offset.
WallTime = Annotated[
    datetime,
    PlainSerializer(lambda d: d.isoformat(), return_type=str),
    WithJsonSchema({"type": "string", "description": "Local wall-clock time as the camera "
                    "recorded it (ISO 8601, no UTC offset: EXIF has none)."}),
]


class ErrorOut(BaseModel):
    detail: str | list[Any] = Field(description="What went wrong and what to do.")


class HitOut(BaseModel):
    id: int
    score: float = Field(description="Cosine similarity to the query vector.")
    path: str
    name: str = Field(description="The file's name.")
    width: int | None = None
    height: int | None = None
    taken_at: WallTime | None = Field(None, description="EXIF capture time, if known.")
    camera: str | None = None
    thumbnail: str = Field(description="URL of a thumbnail (add ?size=N).")
    image: str = Field(description="URL of the original file.")


class SearchOut(BaseModel):
    query: list[str] = Field(description="The query terms as understood, with weights.")
    offset: int
    k: int
    results: list[HitOut]
    next_offset: int | None = Field(None, description="Offset of the next page; null at the end.")


class SearchRequest(BaseModel):
    """A search as a JSON body (or the same fields as multipart form fields, plus an
    ``image`` file part to search by example). At least one of ``q``, ``not``,
    ``items``, ``not_items`` or an uploaded ``image`` must be given (else 422); each
    text is at most 200 characters (the model reads 77 tokens)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    q: QueryText | None = Field(None, description=(
        "Text, or a weighted mix in the query syntax: '2:golden retriever + #42 - leash' "
        "(each text term at most 200 characters). '#N' is an indexed item; text is never "
        "read as a file path."))
    not_: list[Text] = Field(default_factory=list, alias="not", max_length=MAX_TERMS,
                             description="Texts to steer away from.")
    items: list[int] = Field(default_factory=list, max_length=MAX_TERMS,
                             description="Ids of indexed items to search by example.")
    not_items: list[int] = Field(default_factory=list, max_length=MAX_TERMS,
                                 description="Ids of indexed items to steer away from.")
    image_weight: float = Field(1.0, ge=-10, le=10,
                                description="Weight of the uploaded example image (multipart).")
    k: int = Field(20, ge=1, le=200, description="Results per page.")
    offset: int = Field(0, ge=0, le=10_000)
    min_score: float | None = Field(None, ge=-1, le=1)
    path: Filter | None = Field(None, description="Glob on the full path.")
    after: str | None = Field(None, max_length=40, pattern=DATE_PATTERN,
                              description=f"Taken on or after: {DATE_HELP}")
    before: str | None = Field(None, max_length=40, pattern=DATE_PATTERN,
                               description=f"Taken on or before: {DATE_HELP}")
    label: str | None = Field(None, max_length=301, description="LABEL or SET:LABEL.",
                              json_schema_extra={"pattern": "^[^\x00]*$"})

    @field_validator("label")
    @classmethod
    def _label(cls, value: str | None) -> str | None:
        return None if value is None else no_nul(value)


class ItemLabelOut(BaseModel):
    set: str
    label: str
    score: float


class ItemOut(BaseModel):
    id: int
    path: str
    name: str
    size: int
    width: int | None = None
    height: int | None = None
    taken_at: WallTime | None = None
    camera: str | None = None
    format: str | None = None
    indexed_at: ServerTime | None = None
    labels: list[ItemLabelOut] = Field(default_factory=list)
    thumbnail: str
    image: str


class RootOut(BaseModel):
    name: str = Field(description="What POST /index takes as 'root'.")
    path: str
    exists: bool


class IndexRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    root: Text | None = Field(None, description=(
        "Name of a root configured on the server (see GET /roots); null indexes all. "
        "A client can never name a path."))
    allow_removals: bool = Field(False, description=(
        "Remove the items of a root that is empty or on another device now, or most of a "
        "root at once; without it such a run removes nothing and fails with the reason "
        "(an unmounted drive looks like that)."))


class JobOut(BaseModel):
    id: str
    kind: Literal["index"] = "index"
    status: Literal["queued", "running", "done", "failed", "cancelled"]
    roots: list[str]
    done: int = Field(0, description="Files processed so far.")
    total: int = Field(0, description="Files to process (known once the walk is done).")
    created_at: ServerTime
    started_at: ServerTime | None = None
    finished_at: ServerTime | None = None
    summary: dict[str, Any] | None = Field(None, description="The indexer's summary when done.")
    error: str | None = None


class HealthOut(BaseModel):
    status: Literal["ok"] = "ok"
    version: str


class IndexStateOut(BaseModel):
    kind: str
    vectors: int
    generation: int


class InfoOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    collection: str
    model: str | None
    dim: int | None
    indexed: int
    skipped: int
    index: IndexStateOut
    version: str
    auth_required: bool
    max_upload_bytes: int
    max_pixels: int
    roots: list[RootOut]
    features: list[str] = Field(description="Optional endpoints this server offers.")
    text_precision: str | None = Field(None, description="What text queries are encoded at: "
                                       "int8 (CPU default), fp32 or fp16.")
    text_precision_note: str | None = Field(None, description="Why, e.g. the int8 self-check.")
    engine: str | None = Field(None, description="What encoded the collection's images and "
                               "texts when it was last indexed, e.g. 'images: onnx fp32; "
                               "texts: onnx int8' (ONNX Runtime) or 'torch fp32'.")
    engine_now: str | None = Field(None, description="What this server encodes queries with.")
