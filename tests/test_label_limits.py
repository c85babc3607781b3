"""Labels and label-set names are checked at the edge, the same on SQLite and
PostgreSQL: a label over 200 characters (the catalog's column) or holding NUL, a set
name over 100 characters or holding NUL, is one line and exit 2 from the CLI and a
``QueryError`` from the library, before anything is written; looking up such a set is
"not found" (exit 6) on both backends. (HTTP validates the same limits: test_api_limits.)

On PostgreSQL these used to reach psycopg (``StringDataRightTruncation``, ``DataError``):
a traceback from the CLI."""

from __future__ import annotations

import pytest

import clipfind
from clipfind.config import Settings
from clipfind.errors import NotFoundError, QueryError
from tests.fakes import solid
from tests.pg import db_url
from tests.test_cli_errors import one_line, run

LONG = "x" * 201
LONG_NAME = "n" * 101


@pytest.fixture(scope="module")
def labelled(tmp_path_factory, request, catalog_backend, tiny_checkpoint):  # type: ignore[no-untyped-def]
    """Three colours indexed and labelled as ``colours`` on each backend."""
    root = tmp_path_factory.mktemp(f"labels-{catalog_backend}")
    for colour in ("red", "green", "blue"):
        solid(root / "photos" / f"{colour}.png", colour)
    url = db_url(request, catalog_backend)
    settings = Settings(data_dir=root / "data", model=f"local-dir:{tiny_checkpoint}", db_url=url)
    with clipfind.open(settings=settings) as cf:
        cf.index(root / "photos")
        cf.label("colours", ["red", "green", "blue"])
    data = ["--data-dir", str(root / "data"), *(["--db-url", url] if url else [])]
    return {"settings": settings, "data": data, "argv": [*data, "--model", f"local-dir:{tiny_checkpoint}"]}


def sets_of(settings: Settings) -> list[str]:
    with clipfind.open(settings=settings) as cf:
        return [s.name for s in cf.label_sets()]


@pytest.mark.parametrize("labels", [f"red,{LONG}", "red,ok\x00no"])
def test_a_bad_label_from_a_file_or_the_command_line_is_exit_2(labelled, tmp_path, labels):
    sources = [["--labels-file", str(tmp_path / "labels.txt")]]
    (tmp_path / "labels.txt").write_text(labels.replace(",", "\n"), encoding="utf-8")
    if "\x00" not in labels:  # a NUL cannot travel in argv: the file carries it
        sources.append(["--labels", labels])
    for source in sources:
        proc = run("label", *source, "--name", "bad", *labelled["argv"])
        line = one_line(proc)
        assert proc.returncode == 2, proc.stderr
        assert "label" in line and ("200 characters" in line or "NUL" in line), line
    assert sets_of(labelled["settings"]) == ["colours"]  # nothing written


@pytest.mark.parametrize(
    ("name", "labels", "says"),
    [
        ("bad", ["red", LONG], "200 characters"),
        ("bad", ["red", "a\x00b"], "NUL"),
        (LONG_NAME, ["red"], "1-100 characters"),
        ("a\x00b", ["red"], "NUL"),
    ],
)
def test_the_library_refuses_bad_labels_and_names(labelled, name, labels, says):
    with clipfind.open(settings=labelled["settings"]) as cf, pytest.raises(QueryError, match=says):
        cf.label(name, labels)
    assert sets_of(labelled["settings"]) == ["colours"]


@pytest.mark.parametrize("name", [LONG_NAME, "a\x00b"])
def test_looking_up_an_impossible_set_name_is_not_found(labelled, tmp_path, name):
    with clipfind.open(settings=labelled["settings"]) as cf:
        for call in (cf.label_set, cf.delete_label_set):
            with pytest.raises(NotFoundError):
                call(name)
        with pytest.raises(NotFoundError):
            cf.export_label_set(name, "csv", (tmp_path / "out.csv").open("w"))
        with pytest.raises(NotFoundError):
            cf.search("red", label=f"{name}:red")
    assert sets_of(labelled["settings"]) == ["colours"]


def test_cli_lookups_of_a_long_set_name_are_not_found(labelled, tmp_path):
    for argv in (
        ["labels", "show", LONG_NAME],
        ["labels", "delete", LONG_NAME],
        ["labels", "export", LONG_NAME, "-o", str(tmp_path / "out.csv")],
    ):
        proc = run(*argv, *labelled["data"])
        assert proc.returncode == 6, proc.stderr
        assert "no label set" in one_line(proc)
    assert not (tmp_path / "out.csv").exists()
    proc = run("search", "red", "--label", f"{LONG_NAME}:{LONG}", *labelled["argv"])
    assert proc.returncode == 6, proc.stderr
    one_line(proc)


def test_a_label_of_200_characters_is_accepted(labelled):
    label = "y" * 200
    with clipfind.open(settings=labelled["settings"]) as cf:
        summary = cf.label("wide", ["red", label])
        assert summary.labels == ["red", label]
        cf.delete_label_set("wide")
    assert sets_of(labelled["settings"]) == ["colours"]
