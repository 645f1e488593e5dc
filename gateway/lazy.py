"""Lazy re-exports for the gateway's packages (PEP 562): a package's `__init__` names what each
of its modules offers, and a name is imported on first use. Importing one module of a package
therefore never imports its siblings, so an `__init__` cannot create an import cycle."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def exports(package: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` for `package` that imports `names[name]` (a module of it)."""

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    return __getattr__
