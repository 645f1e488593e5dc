"""The `cemesh` command: one module per command group (commands: up, send, token; admin: replay,
events, dlq; cesql; render; topology), one error type with an exit code (errors.py).

`main` is re-exported lazily (PEP 562), so `python -m gateway.cli.cesql` does not import the
module it is about to run through this file."""

from __future__ import annotations

from typing import Any

__all__ = ["main"]


def __getattr__(name: str) -> Any:
    if name == "main":
        from gateway.cli.commands import main

        return main
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
