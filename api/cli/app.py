"""The typer application. Each concern registers its commands from its own module
(listed in ``COMMAND_MODULES``); ``main`` maps domain errors to exit codes."""

from __future__ import annotations

import importlib
import logging
import sys

import typer

from clipfind.api.cli.failures import run_guarded
from clipfind.api.cli.help_names import plain_help_names

app = typer.Typer(
    name="clipfind",
    help="Self-hosted contrastive search for images: index photos, search them by words "
    "or by example, label and detect with zero-shot CLIP/SigLIP.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
_STATE = {"verbose": False}  # --verbose, for the traceback of an internal error

COMMAND_MODULES = [
    "clipfind.api.cli.engine_cmds",
    "clipfind.api.cli.serve_cmds",
    "clipfind.api.cli.classify_cmds",
    "clipfind.api.cli.detect_cmds",
    "clipfind.api.cli.train_cmds",
]


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what happens."),
) -> None:
    _STATE["verbose"] = verbose
    handler = _RichOnFirstRecord()
    handler.addFilter(_OwnOrSevere(logging.INFO if verbose else logging.WARNING))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s",
                        handlers=[handler])
    for noisy in ("huggingface_hub", "urllib3", "httpx", "timm"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


class _RichOnFirstRecord(logging.Handler):
    """rich's log handler, built when the first record passes the filters: most runs log
    nothing, and importing rich is a tenth of a cold query's start-up."""

    def __init__(self) -> None:
        super().__init__()
        self._rich: logging.Handler | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self._rich is None:
            from rich.logging import RichHandler

            self._rich = RichHandler(console=_stderr_console(), show_path=False)
            self._rich.setFormatter(self.formatter)
        self._rich.emit(record)


class _OwnOrSevere(logging.Filter):
    """Our own messages from ``level`` up; other libraries' only with ``--verbose``
    (open_clip logs routine warnings and errors we already explain on the root logger)."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        own = record.name.split(".")[0] == "clipfind"
        if own:
            return record.levelno >= self.level
        return self.level <= logging.INFO and record.levelno >= logging.WARNING


def _stderr_console():  # type: ignore[no-untyped-def]
    from rich.console import Console

    return Console(stderr=True)


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)
plain_help_names(app)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``clipfind`` console script: usage mistakes, domain errors and
    Ctrl-C end in one line and an exit code (:mod:`clipfind.api.cli.failures`)."""
    args = sys.argv[1:] if argv is None else list(argv)
    _STATE["verbose"] = False
    return run_guarded(lambda: app(args=args, prog_name="clipfind", standalone_mode=False),
                       verbose=lambda: _STATE["verbose"] or _verbose_before_command(args))


def _verbose_before_command(args: list[str]) -> bool:
    """``--verbose`` given, when the run failed before the callback recorded it."""
    for arg in args:
        if arg in ("--verbose", "-v"):
            return True
        if not arg.startswith("-"):
            return False
    return False


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
