"""The CLI fails like a CLI: every mistake a user can make is one line on stderr and an
exit code (README: 2 usage/query, 3 model, 5 undecodable image, 6 not found, 130
interrupted), never a traceback, and inputs are checked before the model loads.

Each case runs the installed console script in a subprocess, as a user would. Checks
that must not load the model pass ``--model local-dir:<missing folder>``: loading it
would end in exit 3, so any other code proves the model was never touched."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fakes import clean_env, solid

CLIPFIND = Path(sys.executable).with_name("clipfind")
REPO = Path(__file__).resolve().parents[1]
NO_MODEL = "local-dir:/nonexistent/clipfind-test-model"  # loading it fails with exit 3


def run(*argv: str, data_dir: Path | None = None, timeout: int = 180) -> subprocess.CompletedProcess:
    env = clean_env()
    env["HF_HUB_OFFLINE"] = "1"
    if data_dir is not None:
        env["CLIPFIND_DATA_DIR"] = str(data_dir)
    return subprocess.run([str(CLIPFIND), *argv], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=REPO)


def one_line(proc: subprocess.CompletedProcess) -> str:
    """The single line a failing command printed on stderr."""
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> dict[str, Path]:
    """A collection of three colours indexed with the tiny checkpoint and labelled as
    the set ``colours``; a broken image beside it; a file that is not indexed."""
    root = tmp_path_factory.mktemp("cli-errors")
    photos = root / "photos"
    for colour in ("red", "green", "blue"):
        solid(photos / f"{colour}.png", colour)
    broken = root / "loose" / "broken.jpg"
    broken.parent.mkdir()
    broken.write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    good = solid(root / "loose" / "yellow.png", "yellow")
    data = root / "data"
    model = f"local-dir:{tiny_checkpoint}"
    for argv in (["index", str(photos), "--model", model],
                 ["label", "--labels", "red,green,blue", "--name", "colours", "--model", model]):
        proc = run(*argv, data_dir=data)
        assert proc.returncode == 0, proc.stderr
    return {"data": data, "broken": broken, "good": good, "model": Path(str(tiny_checkpoint))}


# -- usage mistakes: one line with the usage hint, exit 2 -------------------------------------
@pytest.mark.parametrize(("argv", "says"), [
    # click 8.5 (under typer < 0.26) words it "no such option '--bogus'"
    (["search", "--bogus", "x"], ("no such option", "--bogus")),
    (["info", "--model", "x"], ("no such option", "--model")),
    (["search", "dog", "-k", "notanumber"], ("'-k' / '--top'",)),
    (["nosuchcmd"], ("no such command 'nosuchcmd'",)),
    (["search", "- dog"], ("put -- before it",)),
    (["labels", "show"], ("missing argument 'NAME'",)),
    (["index"], ("missing argument 'PATHS'",)),
    (["search", "dog", "cat"], ("unexpected extra argument",)),
])
def test_usage_mistake_is_one_line_with_the_usage_hint_and_exit_2(tmp_path, argv, says):
    proc = run(*argv, data_dir=tmp_path / "data")
    line = one_line(proc)
    assert proc.returncode == 2, proc.stderr
    assert line.startswith("error: ") and all(part in line for part in says), line
    command = " ".join(["clipfind", *[a for a in argv[:2] if a in ("search", "info", "labels",
                                                                      "show", "index")]])
    assert f"see '{command} --help'" in line or argv == ["nosuchcmd"]
    assert not (tmp_path / "data").exists()  # a mistake creates nothing


def test_help_shows_value_names_not_python_types():
    for argv in (["--help"], ["index", "--help"], ["search", "--help"], ["labels", "--help"],
                 ["labels", "show", "--help"], ["serve", "--help"], ["train", "--help"]):
        proc = run(*argv)
        assert proc.returncode == 0, proc.stderr
        for python_name in ("<bool>", "<list[", "<str>", "<int>", "<path>"):
            assert python_name not in proc.stdout, (argv, proc.stdout)
    text = run("index", "--help").stdout
    assert "PATHS" in text and "INTEGER" in text and "{paths}" not in text


# -- the query is refused before the model loads ------------------------------------------
def test_a_query_of_only_negative_terms_is_refused_before_the_model_loads(indexed):
    proc = run("search", "--model", NO_MODEL, "--", "- dog", data_dir=indexed["data"])
    assert proc.returncode == 2 and "positive term" in one_line(proc)


@pytest.mark.parametrize("term", ["missing-photo.jpg", "./shots/ref", "~/no/such/ref.png"])
def test_a_misspelt_file_in_the_query_is_an_error_not_words(indexed, term):
    proc = run("search", f"a dog + {term}", "--model", NO_MODEL, data_dir=indexed["data"])
    line = one_line(proc)
    assert proc.returncode == 6 and term in line and "does not exist" in line


def test_words_with_a_slash_stay_words():
    from clipfind.search.query import parse_query

    assert [t.text for t in parse_query("AC/DC poster + 24/7 diner")] == ["AC/DC poster",
                                                                        "24/7 diner"]


def test_an_undecodable_example_image_is_refused_before_the_model_loads(indexed):
    proc = run("search", "--image", str(indexed["broken"]), "--model", NO_MODEL,
               data_dir=indexed["data"])
    assert proc.returncode == 5 and "broken.jpg" in one_line(proc)
    proc = run("search", "#99999", "--model", NO_MODEL, data_dir=indexed["data"])
    assert proc.returncode == 6 and "#99999" in one_line(proc)


@pytest.mark.parametrize("label", ["nosuch", "colours:nosuch", "nosuchset:red"])
def test_search_by_an_unknown_label_is_not_found(indexed, label):
    proc = run("search", "red", "--label", label, "--model", NO_MODEL, data_dir=indexed["data"])
    assert proc.returncode == 6 and "nosuch" in one_line(proc)
    proc = run("labels", "show", "nosuch", data_dir=indexed["data"])
    assert proc.returncode == 6 and "nosuch" in one_line(proc)


def test_search_by_a_known_label_still_works(indexed):
    """The tiny model's labels are random: the filter must return exactly the items the
    set gave the label, whichever they are (none is a valid answer, not an error)."""
    export = run("labels", "export", "colours", "--format", "jsonl", data_dir=indexed["data"])
    assert export.returncode == 0, export.stderr
    rows = [json.loads(line) for line in export.stdout.splitlines() if line.strip()]
    for label in ("red", "green", "blue"):
        given = {r["id"] for r in rows if label in {x["label"] for x in r["labels"]}}
        proc = run("search", "a colour", "--label", f"colours:{label}", "--json",
                   data_dir=indexed["data"])
        assert proc.returncode == 0, proc.stderr
        assert {h["id"] for h in json.loads(proc.stdout)["results"]} == given


# -- classify and detect check their image first ------------------------------------------
def test_classify_refuses_a_bad_image_or_item_before_the_model_loads(indexed):
    data = indexed["data"]
    proc = run("classify", str(indexed["broken"]), "--labels", "a,b", "--model", NO_MODEL,
               data_dir=data)
    assert proc.returncode == 5 and "broken.jpg" in one_line(proc)
    proc = run("classify", "#99999", "--labels", "a,b", "--model", NO_MODEL, data_dir=data)
    assert proc.returncode == 6 and "#99999" in one_line(proc)
    proc = run("classify", str(indexed["broken"].with_name("gone.jpg")), "--labels", "a,b",
               "--model", NO_MODEL, data_dir=data)
    assert proc.returncode == 6 and "gone.jpg" in one_line(proc)


def test_detect_refuses_a_bad_image_before_the_model_loads(indexed):
    data = indexed["data"]
    proc = run("detect", str(indexed["broken"]), "-q", "a dog", "--model", NO_MODEL, data_dir=data)
    assert proc.returncode == 5 and "broken.jpg" in one_line(proc)
    proc = run("detect", str(indexed["broken"].with_name("gone.jpg")), "-q", "a dog",
               "--model", NO_MODEL, data_dir=data)
    assert proc.returncode == 6 and "gone.jpg" in one_line(proc)


def test_a_model_that_cannot_load_is_exit_3_in_one_line(indexed):
    """The control for the checks above: a valid input with the missing model is exit 3."""
    proc = run("classify", str(indexed["good"]), "--labels", "a,b", "--model", NO_MODEL,
               data_dir=indexed["data"])
    assert proc.returncode == 3 and NO_MODEL.split(":", 1)[1] in one_line(proc)


# -- read-only commands create nothing ----------------------------------------------------
@pytest.mark.parametrize("argv", [
    ["search", "a dog", "--model", NO_MODEL], ["info"], ["labels", "list"],
    ["labels", "show", "x"], ["label", "--labels", "a,b", "--model", NO_MODEL],
    ["forget", "/tmp"]])
def test_read_only_commands_on_a_missing_collection_create_nothing(tmp_path, argv):
    """Reading (or labelling) a collection that is not there is exit 6, and leaves no
    empty collection behind."""
    data = tmp_path / "data"
    proc = run(*argv, data_dir=data)
    line = one_line(proc)
    assert proc.returncode == 6 and "no collection 'default'" in line, line
    assert not data.exists()


def test_classify_of_a_file_needs_no_collection_folder(tmp_path, tiny_checkpoint):
    data = tmp_path / "data"
    image = solid(tmp_path / "red.png", "red")
    proc = run("classify", str(image), "--labels", "red,blue", "--json",
               "--model", f"local-dir:{tiny_checkpoint}", data_dir=data)
    assert proc.returncode == 0, proc.stderr
    assert {row["label"] for row in json.loads(proc.stdout)} == {"red", "blue"}
    assert not data.exists()


# -- Ctrl-C and internal errors -----------------------------------------------------------
def test_ctrl_c_is_exit_130_with_its_message(tmp_path):
    """``index-texts`` blocks reading a FIFO nobody writes to; SIGINT then arrives
    inside the command, as a user's Ctrl-C would."""
    fifo = tmp_path / "texts.txt"
    os.mkfifo(fifo)
    env = clean_env()
    proc = subprocess.Popen(
        [str(CLIPFIND), "index-texts", str(fifo), "--data-dir", str(tmp_path / "data"),
         "--model", NO_MODEL], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    writer = None
    deadline = time.monotonic() + 120
    while writer is None and time.monotonic() < deadline and proc.poll() is None:
        try:  # succeeds once the command has opened the FIFO for reading
            writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            time.sleep(0.05)
    assert writer is not None, proc.communicate(timeout=10)
    time.sleep(0.3)  # into the blocking read
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    os.close(writer)
    assert proc.returncode == 130, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == ["interrupted; finished batches are saved, run the command again to resume"]


_BROKEN_COMMAND = """
import sys
import clipfind.api.cli.engine_cmds as cmds
def boom(*args, **kwargs):
    raise RuntimeError("disk on fire")
cmds.make_settings = boom
from clipfind.api.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_an_internal_error_is_one_line_and_the_traceback_needs_verbose(tmp_path):
    env = {**clean_env(),
           "CLIPFIND_DATA_DIR": str(tmp_path)}
    quiet = subprocess.run([sys.executable, "-c", _BROKEN_COMMAND, "info"], capture_output=True,
                           text=True, env=env, timeout=120, cwd=REPO)
    line = one_line(quiet)
    assert quiet.returncode == 1
    assert line == "internal error: RuntimeError: disk on fire; run with --verbose for details"
    loud = subprocess.run([sys.executable, "-c", _BROKEN_COMMAND, "--verbose", "info"],
                          capture_output=True, text=True, env=env, timeout=120, cwd=REPO)
    assert loud.returncode == 1
    assert "Traceback" in loud.stderr and "disk on fire" in loud.stderr


# -- files the user names -----------------------------------------------------------------
def test_missing_input_files_are_not_found(indexed, tmp_path):
    data = indexed["data"]
    proc = run("classify", str(indexed["good"]), "--labels-file", str(tmp_path / "nope.txt"),
               "--model", NO_MODEL, data_dir=data)
    assert proc.returncode == 6 and "nope.txt" in one_line(proc)
    proc = run("index-texts", str(tmp_path / "nope.txt"), "--model", NO_MODEL, data_dir=data)
    assert proc.returncode == 6 and "nope.txt" in one_line(proc)


def test_export_into_a_missing_folder_or_of_a_missing_set_leaves_no_file(indexed, tmp_path):
    data = indexed["data"]
    proc = run("labels", "export", "colours", "-o", str(tmp_path / "no" / "out.csv"),
               data_dir=data)
    assert proc.returncode == 6 and "no" in one_line(proc)
    proc = run("labels", "export", "nosuch", "-o", str(tmp_path / "out.csv"), data_dir=data)
    assert proc.returncode == 6 and "nosuch" in one_line(proc)
    assert list(tmp_path.iterdir()) == []
    proc = run("labels", "export", "colours", "-o", str(tmp_path / "out.csv"), data_dir=data)
    assert proc.returncode == 0 and (tmp_path / "out.csv").read_text().startswith("item_id,")
