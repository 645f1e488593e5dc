"""Hosting the mesh's functions locally: Knative function projects (func.yaml), Python
functions in-process, other runtimes as subprocesses, and the delivery transport to them.

Public names are re-exported lazily (gateway/lazy.py).
"""

from __future__ import annotations

from gateway.lazy import exports

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

__getattr__ = exports(__name__, _EXPORTS)
