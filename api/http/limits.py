"""What one request may cost: text lengths, prompts per request, and how many heavy
requests (text or image encoding, decoding) run at once.

The model's context is 77 tokens, so a text longer than a few hundred characters only
costs tokenizer time (open_clip's tokenizer is superlinear on long words: 20,000
characters took 22 s). Texts are capped at :data:`MAX_TEXT` characters (also the
catalog's label column width, so both backends take any text that passes) and a
request's prompts (labels × templates) at :data:`MAX_PROMPTS`.

Heavy requests go through :class:`HeavyGate`: ``slots`` run at once, ``queue`` more
wait (in the event loop, holding no thread), and anything beyond that, or waiting
longer than ``wait_s``, is answered 503 with ``Retry-After``. ``/health`` never passes
the gate, so it answers while every slot is busy.

Memory ceiling: every decode of a request's image (uploads, thumbnails, detection on an
item) happens inside a slot, and an upload is refused from its header above
``max_upload_pixels`` (40 Mpx by default), so at most ``slots`` images of at most 40 Mpx
are decoded at once. One such decode peaks at about 400 MB (a 16-bit or RGBA PNG; an
8-bit RGB one about 300 MB), so the server grows by at most about ``slots`` x 400 MB
over idle (default slots: one per core, at most 4). Measured with
``python -m benchmarks.upload_memory`` (2 slots, 6 parallel uploads of each kind): a
12000x12000 PNG is refused with no growth; 40 Mpx PNGs peaked 0.6-0.8 GB over idle.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Annotated

from fastapi import HTTPException, Request
from pydantic import AfterValidator, Field

MAX_TEXT = 200  # characters in one text: a label, query, template or filter value
MAX_QUERY = 1000  # the query syntax holds several terms ('2:dog + #42 - leash')
MAX_PROMPTS = 4000  # labels x templates in one request (1000 labels x 'simple' fits)
MAX_NAME = 100  # a label set's name (the catalog's column width)
MAX_ID = 2**31  # ids are 32-bit integers on PostgreSQL; larger ones cannot exist
RETRY_AFTER_S = 5


def no_nul(value: str) -> str:
    """NUL cannot be stored in PostgreSQL text (nor is it in any photo's path or a
    label): refused at the edge, the same for both backends."""
    if "\x00" in value:
        raise ValueError("must not contain NUL (\\x00) characters")
    return value


_NO_NUL = {"pattern": "^[^\\x00]*$"}  # what the schema says no_nul checks
# A text a client sends (labels, queries, templates, filters).
Text = Annotated[str, Field(max_length=MAX_TEXT, json_schema_extra=_NO_NUL), AfterValidator(no_nul)]
QueryText = Annotated[str, Field(max_length=MAX_QUERY, json_schema_extra=_NO_NUL),
                      AfterValidator(no_nul)]
SetName = Annotated[str, Field(min_length=1, max_length=MAX_NAME, json_schema_extra=_NO_NUL),
                    AfterValidator(no_nul)]


class ServerBusy(HTTPException):
    def __init__(self, why: str) -> None:
        super().__init__(503, f"the server is busy ({why}); retry in {RETRY_AFTER_S} s",
                         headers={"Retry-After": str(RETRY_AFTER_S)})


def default_slots() -> int:
    """One heavy request per core, at most 4: torch uses several threads each, so more
    in parallel only shares the same cores and multiplies peak memory."""
    return max(1, min(4, os.cpu_count() or 1))


def _malloc_trim() -> None:
    """Hand freed heap back to the system (glibc keeps per-thread arenas that a few
    40 Mpx decodes leave at a gigabyte); a no-op elsewhere."""
    with suppress(OSError, AttributeError):
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)


class HeavyGate:
    """A bounded queue in front of the encoder and the decoder (see the module doc)."""

    def __init__(self, slots: int, queue: int, wait_s: float = 30.0) -> None:
        self.slots, self.queue, self.wait_s = slots, queue, wait_s
        self.running = 0
        self.waiting = 0
        self._free: asyncio.Semaphore | None = None  # made in the server's event loop

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self._free is None:
            self._free = asyncio.Semaphore(self.slots)
        if self.running >= self.slots and self.waiting >= self.queue:
            raise ServerBusy(f"{self.running} heavy requests running, {self.waiting} waiting")
        self.waiting += 1
        try:
            await asyncio.wait_for(self._free.acquire(), self.wait_s)
        except TimeoutError:
            raise ServerBusy(f"no free slot within {self.wait_s:g} s") from None
        finally:
            self.waiting -= 1
        self.running += 1
        try:
            yield
        finally:
            self.running -= 1
            self._free.release()
            if self.running == 0 and self.waiting == 0:
                _malloc_trim()


async def heavy(request: Request) -> AsyncIterator[None]:
    """Dependency of every route that encodes or decodes: holds a slot of the app's
    gate while the request runs."""
    async with request.app.state.heavy.slot():
        yield


def check_prompts(labels: list[str], templates: str | list[str] | None) -> None:
    """At most :data:`MAX_PROMPTS` prompts (labels x templates) in one request."""
    from clipfind.errors import QueryError
    from clipfind.search.zeroshot.prompts import resolve_templates

    count = len(resolve_templates(templates))
    if len(labels) * count > MAX_PROMPTS:
        raise QueryError(f"{len(labels)} labels x {count} templates is {len(labels) * count} "
                         f"prompts; at most {MAX_PROMPTS} in one request")
