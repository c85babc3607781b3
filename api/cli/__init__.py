"""The ``clipfind`` command line."""

from clipfind.api.cli.app import app, main

__all__ = ["app", "main"]
