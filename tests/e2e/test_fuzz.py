"""Issue 12: a fuzz test of the ingress and the webhooks, with a fixed seed and budget, in CI.

Hypothesis generates requests (paths, CloudEvents headers, content types, bodies: bytes, JSON
of any shape, JSON nested thousands deep) against the real app in-process; no answer may be a
5xx, and every error answer must be problem+json. The seed is fixed (`derandomize`), so a
failure is reproduced by running the test again."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.http.app import create_app
from gateway.settings import Settings
from tests.builders import broker_yaml
from tests.e2e.harness import write

BUDGET = settings(
    max_examples=1000,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)


def deep(depth: int, opener: str) -> bytes:
    closer = "]" if opener == "[" else "}"
    inner = '{"a":' if opener == "{" else "["
    return (inner * depth + "1" + closer * depth).encode()


bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.builds(deep, st.integers(100, 5000), st.sampled_from(["[", "{"])),
    st.fixed_dictionaries(
        {"specversion": st.sampled_from(["1.0", "0.3", 1]), "id": st.text(max_size=5)},
        optional={"source": st.text(max_size=5), "type": st.text(max_size=5), "data": json_values},
    ).map(lambda v: json.dumps(v).encode()),
)
header_names = st.sampled_from(
    [
        "ce-specversion",
        "ce-id",
        "ce-source",
        "ce-type",
        "ce-time",
        "ce-knativebrokerttl",
        "ce-replyid",
        "ce-dataschema",
        "ce-Bad_Name",
        "ce-",
        "x-github-event",
        "x-github-delivery",
        "x-gitlab-event",
        "idempotency-key",
    ]
)
header_values = st.one_of(
    st.sampled_from(["1.0", "/s", "t", "push", "Push Hook", "2020-01-01T00:00:00Z", "0", "-1"]),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
)
content_types = st.sampled_from(
    [
        "application/json",
        "application/cloudevents+json",
        "application/cloudevents-batch+json",
        "application/cloudevents+xml",
        "text/plain",
        "application/json; charset=latin-1",
        "",
    ]
)
ingress_paths = st.sampled_from(
    [
        "/",
        "/default/default",
        "/default/default/request?timeout=0.05",
        "/default/nope",
        "/x/y",
        "/functions/nope?type=t",
    ]
)
webhook_paths = st.sampled_from(["/webhooks/github", "/webhooks/gitlab", "/webhooks/tekton"])


class App:
    """The real app with its lifespan, on one event loop for the whole test."""

    def __init__(self, directory: Path) -> None:
        write(directory / "config" / "mesh.yaml", broker_yaml())
        self.settings = Settings(
            config=directory / "config",
            functions=directory / "none",
            allow_unsigned_webhooks=True,
            request_timeout_max=1.0,
        )
        self.loop = asyncio.new_event_loop()
        self.app = create_app(self.settings)
        self._lifespan = self.app.router.lifespan_context(self.app)
        self.loop.run_until_complete(self._lifespan.__aenter__())
        transport = httpx.ASGITransport(app=self.app)
        self.http = httpx.AsyncClient(transport=transport, base_url="http://mesh")

    def post(self, path: str, headers: dict[str, str], body: bytes) -> httpx.Response:
        return self.loop.run_until_complete(self.http.post(path, headers=headers, content=body))

    def close(self) -> None:
        self.loop.run_until_complete(self.http.aclose())
        self.loop.run_until_complete(self._lifespan.__aexit__(None, None, None))
        self.loop.close()


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    made = App(tmp_path_factory.mktemp("fuzz"))
    yield made
    made.close()


def check(response: httpx.Response) -> None:
    if response.status_code == 504 and response.url.path.endswith("/request"):
        assert response.json()["type"].endswith("/no-reply")  # request-reply's own answer
        return
    assert response.status_code < 500, (response.status_code, response.text[:300])
    if response.status_code >= 400:
        assert response.headers["content-type"] == "application/problem+json", response.text
        problem: dict[str, Any] = response.json()
        assert problem["status"] == response.status_code


@pytest.mark.parametrize("surface", ["ingress", "webhooks"])
@BUDGET
@given(
    data=st.data(),
    headers=st.dictionaries(header_names, header_values, max_size=6),
    content_type=content_types,
    body=bodies,
)
def test_no_request_gets_a_5xx(
    app: App,
    surface: str,
    data: st.DataObject,
    headers: dict[str, str],
    content_type: str,
    body: bytes,
) -> None:
    path = data.draw(ingress_paths if surface == "ingress" else webhook_paths, label="path")
    check(app.post(path, {**headers, "content-type": content_type}, body))
