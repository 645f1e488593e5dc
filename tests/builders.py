"""Builders for what the tests and benchmarks give the mesh, instead of a hand-written copy per
file: Broker and Trigger YAML, recording sink function projects, binary-mode event headers."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

EVENTING = "eventing.knative.dev/v1"


def _document(kind: str, name: str, namespace: str | None, **rest: Any) -> str:
    metadata: dict[str, Any] = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    annotations = rest.pop("annotations", None)
    if annotations:
        metadata["annotations"] = dict(annotations)
    document = {"apiVersion": EVENTING, "kind": kind, "metadata": metadata}
    spec = {key: value for key, value in rest.items() if value is not None}
    if spec:
        document["spec"] = spec
    return yaml.safe_dump(document, sort_keys=False)


def broker_yaml(
    name: str = "default",
    namespace: str | None = "default",
    *,
    annotations: Mapping[str, str] | None = None,
    delivery: Mapping[str, Any] | None = None,
) -> str:
    """One Broker document."""
    return _document("Broker", name, namespace, annotations=annotations, delivery=delivery)


def subscriber(uri: str | None = None, *, function: str | None = None) -> dict[str, Any]:
    """A Trigger's (or a dead letter sink's) destination: a URL, or a function of the mesh."""
    if function is not None:
        return {"ref": {"kind": "Service", "name": function}}
    assert uri is not None, "a subscriber is a uri or a function"
    return {"uri": uri}


def trigger_yaml(
    name: str,
    uri: str | None = None,
    *,
    function: str | None = None,
    broker: str = "default",
    namespace: str | None = "default",
    type: str | None = None,
    attributes: Mapping[str, str] | None = None,
    filters: list[dict[str, Any]] | None = None,
    delivery: Mapping[str, Any] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> str:
    """One Trigger document: `type=` (or `attributes=`) is the exact attribute `filter`,
    `filters=` the SQL/dialect list; the subscriber is `uri` or `function`."""
    exact = {**({"type": type} if type is not None else {}), **(attributes or {})}
    return _document(
        "Trigger",
        name,
        namespace,
        annotations=annotations,
        broker=broker,
        filter={"attributes": exact} if exact else None,
        filters=filters,
        subscriber=subscriber(uri, function=function),
        delivery=dict(delivery) if delivery is not None else None,
    )


def documents(*parts: str) -> str:
    """Several YAML documents as one file."""
    return "---\n".join(part if part.endswith("\n") else part + "\n" for part in parts)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, "utf-8")
    return path


SINK_FUNCTION = '''\
"""A sink function written by the tests: answers every request with {status}, keeps it."""


def new():
    return Function()


class Function:
    def __init__(self):
        self.received = []

    async def handle(self, scope, receive, send):
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        headers = {{k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}}
        self.received.append((headers, body))
        await send({{"type": "http.response.start", "status": {status}, "headers": []}})
        await send({{"type": "http.response.body", "body": b""}})
'''


def sink_function(functions: Path, name: str, status: int = 200) -> Path:
    """A Python function project under `functions/` that answers `status` and records every
    request on its instance (`received`: headers and body)."""
    project = functions / name
    write(
        project / "func.yaml",
        f"specVersion: 0.36.0\nname: {name}\nruntime: python\ninvoke: http\n"
        'created: "2026-01-01T00:00:00Z"\n',
    )
    write(project / "pyproject.toml", f'[project]\nname = "{name}"\nversion = "0.0.0"\n')
    write(project / "function" / "__init__.py", SINK_FUNCTION.format(status=status))
    return project


def binary(event_id: str, event_type: str, source: str = "/test", **extra: str) -> dict[str, str]:
    """Binary-mode headers of one event; `extra` adds headers as given (`ce-subject`...)."""
    headers = {"ce-specversion": "1.0", "ce-id": event_id, "ce-source": source}
    headers["ce-type"] = event_type
    headers.update(extra)
    return headers
