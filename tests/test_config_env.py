"""``Settings`` reads ``CLIPFIND_*`` variables itself (pydantic-settings costs a cold query
a tenth of a second to import): checked against pydantic-settings' own ``BaseSettings``
and ``EnvSettingsSource`` with the same fields, on the same environments."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict, SettingsError

from clipfind.config import Settings, SettingsEnvError, environment
from clipfind.errors import QueryError
from clipfind.library_args import settings_of


class Reference(BaseSettings, Settings):
    """Settings' fields and validators, filled by pydantic-settings as before."""

    model_config = SettingsConfigDict(env_prefix="CLIPFIND_", extra="ignore")

    def __init__(self, **values: object) -> None:
        BaseSettings.__init__(self, **values)  # type: ignore[arg-type]


ENVIRONMENTS = [
    {},
    {"CLIPFIND_MODEL": "ViT-B-32/x", "clipfind_collection": "lower", "CLIPFIND_Device": "cpu"},
    {
        "CLIPFIND_ROOTS": '["/a", "b/c"]',
        "CLIPFIND_CORS_ORIGINS": '["http://x:1"]',
        "CLIPFIND_ALLOWED_HOSTS": "[]",
    },
    {
        "CLIPFIND_BATCH_SIZE": "64",
        "CLIPFIND_INDEX_MEMORY": "1.5GiB",
        "CLIPFIND_DATA_DIR": "rel/d",
        "CLIPFIND_TEXT_PRECISION": "int8",
        "CLIPFIND_ENGINE": "onnx",
        "CLIPFIND_MODEL_CACHE": "~/m",
    },
    {
        "CLIPFIND_API_KEY": "",
        "CLIPFIND_DB_URL": "sqlite:////tmp/x.db",
        "CLIPFIND_NOT_A_FIELD": "1",
        "OTHER_MODEL": "no",
        "CLIPFIND_WORKERS": "3",
        "CLIPFIND_DETECTOR": "owlv2",
    },
]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    for name in [n for n in __import__("os").environ if n.upper().startswith("CLIPFIND_")]:
        monkeypatch.delenv(name)

    def set_env(values: dict[str, str]) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)

    return set_env


@pytest.mark.parametrize("values", ENVIRONMENTS)
def test_environment_reads_what_pydantic_settings_reads(env, values) -> None:  # type: ignore[no-untyped-def]
    env(values)
    source = EnvSettingsSource(Reference, env_prefix="CLIPFIND_", case_sensitive=False)
    assert environment(Settings.model_fields) == source()
    assert Settings().model_dump() == Reference().model_dump()
    assert (
        Settings(model="given", batch_size=7).model_dump()
        == Reference(model="given", batch_size=7).model_dump()
    )


def test_arguments_win_over_the_environment_and_none_is_a_value(env) -> None:  # type: ignore[no-untyped-def]
    env({"CLIPFIND_MODEL": "from-env", "CLIPFIND_COLLECTION": "envcoll"})
    assert Settings(model="given").model == "given"
    assert Settings(model=None).model is None and Reference(model=None).model is None
    assert Settings().collection == "envcoll"
    assert settings_of(None, {"collection": None}).collection == "envcoll"  # None: not given


def test_a_list_variable_that_is_not_json_is_refused_like_pydantic_settings(env) -> None:  # type: ignore[no-untyped-def]
    env({"CLIPFIND_ROOTS": "/photos"})
    with pytest.raises(SettingsError):
        Reference()
    with pytest.raises(SettingsEnvError, match="CLIPFIND_ROOTS must be a JSON list"):
        Settings()
    with pytest.raises(QueryError, match="CLIPFIND_ROOTS"):  # the CLI's one line, exit 2
        settings_of(None, {})


def test_a_refused_value_is_the_same_validation_error(env) -> None:  # type: ignore[no-untyped-def]
    env({"CLIPFIND_BATCH_SIZE": "0", "CLIPFIND_COLLECTION": "bad/name"})
    with pytest.raises(ValidationError) as ours:
        Settings()
    with pytest.raises(ValidationError) as theirs:
        Reference()
    assert [e["loc"] for e in ours.value.errors()] == [e["loc"] for e in theirs.value.errors()]
    assert [e["msg"] for e in ours.value.errors()] == [e["msg"] for e in theirs.value.errors()]
