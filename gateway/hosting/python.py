"""Local function hosting: every `functions/<name>/` Knative Functions project, in-process.

Python functions run inside func-python's own ASGI application (the same code `func deploy`
puts in the image), so what works under `cemesh up` works in Knative. Each function package is
named `function` (func's rule), so each is imported under a unique module name. The dispatcher
calls them through an in-process ASGI request: no socket, but the same HTTP semantics.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brokers.errors import ConfigError, SubscriberUnreachable
from brokers.transport import Response
from brokers.triggers import FunctionSubscriptions
from gateway.hosting.funcyaml import FuncYaml, load_func_yaml

log = logging.getLogger(__name__)
ASGIApp = Any


@dataclass(frozen=True, slots=True)
class FunctionProject:
    name: str
    path: Path
    spec: FuncYaml
    namespace: str

    @property
    def runtime(self) -> str:
        return self.spec.runtime or "python"

    @property
    def invoke(self) -> str:
        return self.spec.invoke or "http"

    def subscriptions(self) -> FunctionSubscriptions:
        subs = self.spec.deploy.subscriptions if self.spec.deploy else []
        return FunctionSubscriptions(
            self.name,
            self.namespace,
            [(s.source, dict(s.filters)) for s in subs],
            str(self.path / "func.yaml"),
        )


def discover(directory: Path, default_namespace: str = "default") -> list[FunctionProject]:
    """Every directory under `directory` holding a func.yaml."""
    projects: list[FunctionProject] = []
    if not directory.exists():
        return projects
    for func_yaml in sorted(directory.glob("*/func.yaml")):
        spec = load_func_yaml(func_yaml)
        name = spec.name or func_yaml.parent.name
        namespace = (spec.deploy and spec.deploy.namespace) or spec.namespace or default_namespace
        project = FunctionProject(name, func_yaml.parent, spec, namespace)
        if project.runtime == "python":
            _check_python_project(project)
        projects.append(project)
    return projects


def _check_python_project(project: FunctionProject) -> None:
    init = project.path / "function" / "__init__.py"
    if not init.exists():
        raise ConfigError(
            str(project.path), project.name, "a Python function needs function/__init__.py"
        )
    if not (project.path / "pyproject.toml").exists():
        raise ConfigError(str(project.path), project.name, "a Python function needs pyproject.toml")


def import_function(project: FunctionProject) -> Any:
    """Import the project's `function` package under a unique name; return its `new`/`handle`."""
    module_name = f"cemesh_functions.{project.name.replace('-', '_')}"
    package_dir = project.path / "function"
    spec = importlib.util.spec_from_file_location(
        module_name, package_dir / "__init__.py", submodule_search_locations=[str(package_dir)]
    )
    if spec is None or spec.loader is None:
        raise ConfigError(str(package_dir), project.name, "cannot import the function package")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise ConfigError(str(package_dir), project.name, f"import failed: {exc!r}") from None
    factory = getattr(module, "new", None) or getattr(module, "handle", None)
    if factory is None:
        raise ConfigError(
            str(package_dir), project.name, "the package exports neither new nor handle"
        )
    return factory


@dataclass(slots=True)
class HostedFunction:
    project: FunctionProject
    instance: Any
    app: ASGIApp
    env: dict[str, str] = field(default_factory=dict)


def _asgi_application(project: FunctionProject, instance: Any) -> ASGIApp:
    # func_python configures logging at import; import it only when a function is hosted.
    if project.invoke == "cloudevent":
        from func_python.cloudevent import ASGIApplication
    else:
        from func_python.http import ASGIApplication
    return ASGIApplication(instance)


class FunctionHost:
    """Hosts the Python functions of a mesh and calls them like Knative would."""

    def __init__(
        self,
        projects: Sequence[FunctionProject],
        extra_env: Mapping[str, str] | None = None,
        env_for: Callable[[FunctionProject], Mapping[str, str]] | None = None,
    ):
        """`extra_env` is given to every function, `env_for(project)` to one (its state)."""
        self.projects = {p.name: p for p in projects}
        self.extra_env = dict(extra_env or {})
        self.hosted: dict[str, HostedFunction] = {}
        self.env_for = env_for

    async def start(self) -> None:
        for project in self.projects.values():
            if project.runtime != "python":
                log.info("function %s (%s) is not hosted in-process", project.name, project.runtime)
                continue
            factory = import_function(project)
            if factory.__name__ == "new":
                instance = factory()
            else:
                from func_python.cloudevent import DefaultFunction

                instance = DefaultFunction(factory)
            env = {
                **os.environ,
                **project.spec.envs,
                **self.extra_env,
                "CEMESH_FUNCTION": project.name,
            }
            if self.env_for is not None:
                env.update(self.env_for(project))
            if hasattr(instance, "start"):
                try:
                    result = instance.start(env)
                    if asyncio.iscoroutine(result):
                        await result
                except Exception as exc:
                    where = str(project.path / "function")
                    raise ConfigError(where, project.name, f"start() failed: {exc}") from exc
            self.hosted[project.name] = HostedFunction(
                project, instance, _asgi_application(project, instance), env
            )

    async def stop(self) -> None:
        for hosted in self.hosted.values():
            if hasattr(hosted.instance, "stop"):
                try:
                    result = hosted.instance.stop()
                    if asyncio.iscoroutine(result):
                        await result
                except Exception:
                    log.exception("function %s failed to stop", hosted.project.name)
        self.hosted.clear()

    def __contains__(self, name: object) -> bool:
        return name in self.hosted

    async def call(
        self,
        name: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        timeout: float,
        path: str = "/",
    ) -> Response:
        hosted = self.hosted.get(name)
        if hosted is None:
            raise SubscriberUnreachable(f"function {name} is not running")
        return await asyncio.wait_for(
            asgi_request(hosted.app, "POST", path, headers, body), timeout
        )


async def asgi_request(
    app: ASGIApp, method: str, path: str, headers: Sequence[tuple[str, str]], body: bytes
) -> Response:
    """One HTTP request to an ASGI app, in-process.

    Hand-written (about 30 lines) because httpx's ASGITransport adds a client stack per call
    that costs more than the function itself on the hot delivery path.
    """
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "server": ("127.0.0.1", 0),
        "client": ("127.0.0.1", 0),
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        + [(b"content-length", str(len(body)).encode())],
    }
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.Event().wait()  # the request is over: wait for disconnect forever
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    status = 500
    out_headers: dict[str, str] = {}
    chunks: list[bytes] = []

    async def send(message: Mapping[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])
            for key, value in message.get("headers", []):
                k = key.decode("latin-1") if isinstance(key, bytes) else str(key)
                v = value.decode("latin-1") if isinstance(value, bytes) else str(value)
                out_headers[k.lower()] = v
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return Response(status, out_headers, b"".join(chunks))
