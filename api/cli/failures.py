"""How the CLI ends: every way a run can stop becomes one line on stderr and an exit code.

typer 0.29 vendors click as ``typer._click`` and raises *its* exception classes; older
typer raises the separate ``click`` package's. Both sets are caught here, so a usage
mistake is one line and exit 2 whichever typer is installed.

Exit codes (README): 0 ok, 1 internal error, 2 bad query or usage, 3 model could not be
loaded, 4 model mismatch, 5 undecodable image, 6 not found, 7 collection/database
problem, 130 interrupted.
"""

from __future__ import annotations

import errno
import sys
import traceback
from collections.abc import Callable
from types import ModuleType
from typing import Any

import typer

from clipfind.errors import ClipfindError

INTERRUPTED = "interrupted; finished batches are saved, run the command again to resume"
EXIT_USAGE = 2
EXIT_NOT_FOUND = 6
EXIT_INTERRUPTED = 130


def _click_modules() -> list[ModuleType]:
    """The click implementations typer may raise from: its vendored copy, and click."""
    found = []
    for name in ("typer._click.exceptions", "click.exceptions"):
        try:
            found.append(__import__(name, fromlist=["UsageError"]))
        except ImportError:
            continue
    return found


def _classes(attr: str, *extra: type[BaseException]) -> tuple[type[BaseException], ...]:
    out = [getattr(m, attr) for m in _click_modules() if hasattr(m, attr)]
    return tuple(dict.fromkeys([*out, *extra]))


USAGE_ERRORS = _classes("UsageError")
# FileError and the like (one line, their own code); typer 0.29's own base class too
CLICK_ERRORS = _classes("ClickException", *filter(None, [getattr(typer, "TyperException", None)]))
ABORTS = _classes("Abort", typer.Abort)
EXITS = _classes("Exit", typer.Exit)
NO_ARGS_IS_HELP = _classes("NoArgsIsHelpError")


def run_guarded(invoke: Callable[[], Any], verbose: Callable[[], bool]) -> int:
    """Run ``invoke`` (the typer app, not in standalone mode) and turn whatever ends it
    into an exit code. ``verbose`` says, after the fact, whether ``--verbose`` was given:
    only then does an internal error print its traceback."""
    try:
        code = invoke()
    except ClipfindError as exc:
        _say(f"error: {_one_line(str(exc))}")
        return exc.exit_code
    except NO_ARGS_IS_HELP as exc:  # bare `clipfind` or `clipfind labels`: the help
        print(exc.format_message(), file=sys.stderr)  # type: ignore[attr-defined]
        return EXIT_USAGE
    except USAGE_ERRORS as exc:
        _say(usage_line(exc))
        return EXIT_USAGE
    except CLICK_ERRORS as exc:
        _say(f"error: {_sentence(exc.format_message())}")  # type: ignore[attr-defined]
        return int(getattr(exc, "exit_code", 1))
    except (*ABORTS, KeyboardInterrupt):
        _say(INTERRUPTED)
        return EXIT_INTERRUPTED
    except EXITS as exc:
        code = getattr(exc, "exit_code", 0)
    except FileNotFoundError as exc:  # a path the user gave (--labels-file, --draw's folder)
        _say(f"error: no such file or folder: {exc.filename or exc}")
        return EXIT_NOT_FOUND
    except OSError as exc:
        if exc.errno == errno.EPIPE:  # `clipfind search ... | head`: the reader left
            return 0
        if exc.filename is None:
            return _internal(exc, verbose())
        _say(f"error: cannot use {exc.filename}: {exc.strerror or exc}")
        return 1
    except Exception as exc:
        return _internal(exc, verbose())
    # Without standalone mode typer *returns* the code of an Exit it caught; Ctrl-C is
    # one of them (Exit(130)), which used to end the run silently with status 0.
    if code == EXIT_INTERRUPTED:
        _say(INTERRUPTED)
    return code if isinstance(code, int) and not isinstance(code, bool) else 0


def usage_line(exc: BaseException) -> str:
    """``error: <what>; see 'clipfind search --help'``: the message and the usage hint
    on one line (click prints four)."""
    message = _sentence(exc.format_message())  # type: ignore[attr-defined]
    if _is_dash_query(exc):
        message = ("a query that starts with '-' reads as an option; put -- before it: "
                   "clipfind search -- '- dog + cat'")
    ctx = getattr(exc, "ctx", None)
    command = getattr(ctx, "command_path", None) or "clipfind"
    return f"error: {message}; see '{command} --help'"


def _is_dash_query(exc: BaseException) -> bool:
    """``clipfind search "- dog"``: click takes the query for a short option."""
    name = getattr(exc, "option_name", None)
    return isinstance(name, str) and name.startswith("-") and not name.startswith("--") and (
        len(name) < 2 or not name[1].isalnum())


def _sentence(text: str) -> str:
    """click's "No such option: --x." as our "no such option: --x", on one line."""
    text = _one_line(text).rstrip(".")
    if text[:1].isupper() and not text[1:2].isupper():
        text = text[0].lower() + text[1:]
    return text


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _internal(exc: BaseException, verbose: bool) -> int:
    if verbose:
        traceback.print_exception(exc, file=sys.stderr)
    detail = _one_line(str(exc)) or "no message"
    hint = "" if verbose else "; run with --verbose for details"
    _say(f"internal error: {type(exc).__name__}: {detail}{hint}")
    return 1


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
