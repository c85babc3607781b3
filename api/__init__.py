"""Shells around the library: the HTTP API (``api.http``), the CLI (``api.cli``) and the
web page (``api.web``). They parse, call one function and render; nothing here holds
business logic. Importing this package imports nothing heavy."""
