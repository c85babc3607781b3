"""Dependencies: the app state, and the optional API key every endpoint but /health needs."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from clipfind.api.http.state import AppState
from clipfind.encoding import Encoder
from clipfind.store.collection import Collection

_key_header = APIKeyHeader(name="X-API-Key", auto_error=False,
                           description="The server's API key (CLIPFIND_API_KEY), if it has one.")
_bearer = HTTPBearer(auto_error=False, description="The API key as a bearer token.")


def get_state(request: Request) -> AppState:
    return request.app.state.clipfind  # type: ignore[no-any-return]


StateDep = Annotated[AppState, Depends(get_state)]


def get_collection(state: StateDep) -> Collection:
    return state.collection


def get_encoder(state: StateDep) -> Encoder:
    return state.encoder


CollectionDep = Annotated[Collection, Depends(get_collection)]
EncoderDep = Annotated[Encoder, Depends(get_encoder)]


def require_api_key(
    state: StateDep,
    key: Annotated[str | None, Security(_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> None:
    """401 unless the request carries the configured key (X-API-Key or Bearer)."""
    expected = state.settings.api_key
    if not expected:
        return
    given = key if key is not None else (bearer.credentials if bearer else None)
    if given is None or not hmac.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(
            401,
            "missing or wrong API key: send it as 'X-API-Key: KEY' or 'Authorization: Bearer KEY'",
            headers={"WWW-Authenticate": "Bearer"},
        )
