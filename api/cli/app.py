"""The typer application. Each concern registers its commands from its own module
(listed in ``COMMAND_MODULES``); ``main`` maps domain errors to exit codes."""

from __future__ import annotations

import importlib
import logging
import sys

import click
import typer

from clipfind.errors import ClipfindError

app = typer.Typer(
    name="clipfind",
    help="Self-hosted contrastive search for images: index photos, search them by words "
    "or by example, label and detect with zero-shot CLIP/SigLIP.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

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
    from rich.logging import RichHandler

    handler = RichHandler(console=_stderr_console(), show_path=False)
    handler.addFilter(_OwnOrSevere(logging.INFO if verbose else logging.WARNING))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s",
                        handlers=[handler])
    for noisy in ("huggingface_hub", "urllib3", "httpx", "timm"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


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


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``clipfind`` console script."""
    try:
        # Without standalone mode typer *returns* the code of an Exit it caught; Ctrl-C
        # is one of them (Exit(130)), which used to end the run silently with status 0.
        code = app(args=argv, standalone_mode=False)
    except ClipfindError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except click.exceptions.Abort:
        print("interrupted; finished batches are saved, run the command again to resume",
              file=sys.stderr)
        return 130
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except KeyboardInterrupt:
        code = 130
    if code == 130:
        print("interrupted; finished batches are saved, run the command again to resume",
              file=sys.stderr)
    return code if isinstance(code, int) and not isinstance(code, bool) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
