"""Bodies that are JSON, or multipart form fields plus an uploaded ``image`` file.

The same pydantic model validates both: multipart fields are gathered by the model's
field names (list fields from repeated fields). Uploaded bytes are capped here; they are
decoded later by the same safe decoder the indexer uses (pixel cap, EXIF, formats).
"""

from __future__ import annotations

import io
import typing
from typing import Any, TypeVar

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from PIL import Image
from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData, UploadFile

from clipfind.api.http.errors import PayloadTooLarge
from clipfind.errors import ClipfindError, ImageDecodeError

M = TypeVar("M", bound=BaseModel)
FILE_FIELD = "image"


def _is_list(annotation: Any) -> bool:
    if typing.get_origin(annotation) is list:
        return True
    return any(typing.get_origin(a) is list for a in typing.get_args(annotation))


def _form_to_dict(form: FormData, model: type[BaseModel]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        key = field.alias or name
        values = [v for v in form.getlist(key) if isinstance(v, str) and v != ""]
        if values:
            out[key] = values if _is_list(field.annotation) else values[-1]
    return out


def _validate(model: type[M], raw: Any, json: bool) -> M:
    try:
        return model.model_validate_json(raw) if json else model.model_validate(raw)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from exc


async def _read_upload(upload: UploadFile, limit: int) -> bytes:
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(limit, f"uploaded file {upload.filename or FILE_FIELD!r}")
    if not data:
        raise HTTPException(422, f"uploaded file {upload.filename or FILE_FIELD!r} is empty")
    return data


def check_upload_pixels(data: bytes, max_pixels: int) -> None:
    """Refuse an upload of more than ``max_pixels`` from its header alone, before any
    pixel is decoded (a 400 KB PNG can claim 144 Mpx). What Pillow cannot identify is
    left to the decoder, which gives the reason."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
    except Exception:  # not an image, truncated header, ...: the decoder says which
        return
    if width * height > max_pixels:
        raise ImageDecodeError(
            f"upload: {width}x{height} exceeds the {max_pixels:,}-pixel cap for uploads "
            "(the server's max_upload_pixels / CLIPFIND_MAX_UPLOAD_PIXELS); send a smaller image")


def _json_type(request: Request) -> bool:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return ctype == "application/json" or (ctype.startswith("application/") and ctype.endswith("+json"))


async def read_json(request: Request, model: type[M]) -> M:
    """A JSON body as ``model``; bytes that are not UTF-8 JSON are a 422 with a message."""
    if not _json_type(request):
        raise HTTPException(415, "unsupported content type: send application/json")
    return _validate(model, await request.body() or b"{}", json=True)


async def read_body(request: Request, model: type[M], limit: int) -> tuple[M, bytes | None]:
    """Parse a JSON or multipart body into ``model`` and the uploaded image's bytes."""
    parsed, files = await read_body_files(request, model, limit, (FILE_FIELD,))
    return parsed, files.get(FILE_FIELD)


async def read_body_files(request: Request, model: type[M], limit: int,
                          names: tuple[str, ...]) -> tuple[M, dict[str, bytes]]:
    """:func:`read_body` with several file parts (``names``, e.g. ``image`` and
    ``example`` for detection by example); each is capped and pixel-checked alike."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json" or (ctype.startswith("application/") and ctype.endswith("+json")):
        return _validate(model, await request.body() or b"{}", json=True), {}
    if ctype == "multipart/form-data":
        try:
            form_cm = request.form(max_files=len(names), max_fields=200, max_part_size=256 * 1024)
            async with form_cm as form:
                parsed = _validate(model, _form_to_dict(form, model), json=False)
                files = {}
                for name in names:
                    upload = form.get(name)
                    if upload is not None and not isinstance(upload, UploadFile):
                        raise HTTPException(422, f"'{name}' must be a file part, not a text field")
                    if upload is not None:
                        files[name] = data = await _read_upload(upload, limit)
                        settings = request.app.state.settings
                        check_upload_pixels(data, min(settings.max_upload_pixels, settings.max_pixels))
                return parsed, files
        except (HTTPException, RequestValidationError, ClipfindError):
            raise
        except Exception as exc:  # malformed multipart: the client's fault, say so
            raise HTTPException(400, f"cannot parse the multipart body: {exc}") from exc
    raise HTTPException(
        415, f"unsupported content type {ctype or 'none'!r}: send application/json, or "
        f"multipart/form-data with an '{FILE_FIELD}' file part",
    )


def json_openapi(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` for a JSON body read by :func:`read_json` (the schema itself is
    registered in the components by :func:`add_body_schemas`)."""
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}}


def body_openapi(model: type[BaseModel], description: str,
                 extra_files: dict[str, str] | None = None) -> dict[str, Any]:
    """``openapi_extra`` documenting both body forms of ``model`` (the JSON schema is
    registered in the components by :func:`add_body_schemas`); ``extra_files``: more
    file parts than ``image``, name → description."""
    form = model.model_json_schema(ref_template="#/components/schemas/{model}")
    form.pop("$defs", None)
    form.pop("additionalProperties", None)
    form["title"] = f"{model.__name__}Form"
    form["properties"][FILE_FIELD] = {
        "type": "string", "format": "binary",
        "description": "An image file (JPEG, PNG, WebP, HEIC, ...)."}
    for name, text in (extra_files or {}).items():
        form["properties"][name] = {"type": "string", "format": "binary", "description": text}
    return {"requestBody": {"required": True, "description": description, "content": {
        "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}},
        "multipart/form-data": {"schema": form},
    }}}


def add_body_schemas(openapi: dict[str, Any], models: list[type[BaseModel]]) -> dict[str, Any]:
    """Put ``models`` (and the models they use) into the schema's components."""
    schemas = openapi.setdefault("components", {}).setdefault("schemas", {})
    for model in models:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return openapi
