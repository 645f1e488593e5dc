"""Hosting the mesh's functions locally: Knative function projects (func.yaml), Python
functions in-process, other runtimes as subprocesses, and the delivery transport to them.

Public names are re-exported lazily (PEP 562), so importing one module of the package does
not import the others (no import cycles through this file).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "Build": "funcyaml",
    "Deploy": "funcyaml",
    "Env": "funcyaml",
    "FuncYaml": "funcyaml",
    "FunctionHost": "python",
    "FunctionProject": "python",
    "HostedFunction": "python",
    "MeshTransport": "transport",
    "Options": "funcyaml",
    "ProcessHost": "node",
    "Run": "funcyaml",
    "RunningFunction": "node",
    "Scale": "funcyaml",
    "Subscription": "funcyaml",
    "Tools": "node",
    "Unavailable": "node",
    "asgi_request": "python",
    "discover": "python",
    "ensure_dependencies": "node",
    "entry_point": "node",
    "free_port": "node",
    "import_function": "python",
    "install_all": "node",
    "load_func_yaml": "funcyaml",
    "main": "node",
    "needs_install": "node",
    "npm_error": "node",
    "translated": "transport",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
