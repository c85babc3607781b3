"""The ``clipfind`` command line."""

from api.cli.app import app, main

__all__ = ["app", "main"]
