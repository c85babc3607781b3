"""Value names in ``--help``: ``--top INTEGER``, ``PATHS...``, and nothing beside a flag.

typer 0.29 prints Python type names instead (``--json <bool>``, ``paths...
<list[Path]>``). Each command gets click's plain metavars, derived from the parameter's
annotation, unless the declaration names its own; older typer shows the same names.
"""

from __future__ import annotations

import inspect
import types
import typing
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

_LABELS: dict[Any, str] = {int: "INTEGER", float: "FLOAT", str: "TEXT", Path: "PATH"}


def plain_help_names(app: typer.Typer) -> None:
    """Give every command of ``app`` (and of its sub-apps) plain value names."""
    if _unset(app.info.cls, TyperGroup):
        app.info.cls = PlainNamesGroup
    for info in app.registered_commands:
        if _unset(info.cls, TyperCommand):
            info.cls = PlainNamesCommand
    for group in app.registered_groups:
        if _unset(group.cls, TyperGroup):
            group.cls = PlainNamesGroup
        if group.typer_instance is not None:
            plain_help_names(group.typer_instance)


def _unset(cls: Any, default: type) -> bool:
    """typer's own default (``None``, its class, or a ``DefaultPlaceholder`` of it)."""
    return cls is None or cls is default or getattr(cls, "value", cls) in (None, default)


class _PlainNames:
    """Mixed into typer's command classes: parameters carry click's plain metavars."""

    params: list[Any]
    callback: Any

    def _plain_names(self) -> None:
        hints = _hints(self.callback)
        for param in self.params:
            if param.metavar is None and param.name in hints:
                _name_values(param, hints[param.name])

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)  # type: ignore[misc]
        if option is not None:
            option.metavar = ""
        return option


class PlainNamesCommand(_PlainNames, TyperCommand):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plain_names()


class PlainNamesGroup(_PlainNames, TyperGroup):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plain_names()


def _hints(callback: Any) -> dict[str, Any]:
    if callback is None:
        return {}
    try:
        return typing.get_type_hints(inspect.unwrap(callback))
    except Exception:  # an annotation we cannot resolve keeps typer's own name
        return {}


def _name_values(param: Any, annotation: Any) -> None:
    base, many = _base_type(annotation)
    if base is bool:
        param.metavar = ""  # a flag takes no value
        return
    label = _LABELS.get(base, "VALUE")
    if getattr(param, "param_type_name", "") == "argument":
        param.metavar = str(param.name).upper()
        shown = label + ("..." if many else "")
        # typer 0.29 prints an argument's type beside its name, ignoring the metavar
        param.display_type_rich = types.MethodType(lambda self, ctx: shown, param)
    else:
        param.metavar = label


def _base_type(annotation: Any) -> tuple[Any, bool]:
    """``list[Path] | None`` → (Path, True); ``int | None`` → (int, False)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return _base_type(args[0])
    if typing.get_origin(annotation) in (list, tuple) and args:
        return _base_type(args[0])[0], True
    return annotation, False
