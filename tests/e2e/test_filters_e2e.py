"""Every filter dialect through a running mesh: `cemesh up` in a subprocess, one trigger per
dialect each pointing at its own path on one sink, a set of events in, and each trigger must
receive exactly the events its filter selects (issue 4). Expectations are written by hand from
the filter semantics in docs/filters.md, not computed by the code under test."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.builders import broker_yaml, documents, trigger_yaml
from tests.e2e.harness import MeshProcess, Sink, mesh_config, post

pytestmark = pytest.mark.e2e

HAS_CEL = importlib.util.find_spec("cel_expr_python") is not None
ORDER = "com.example.order"

TRIGGERS: dict[str, str] = {
    # legacy: exact and ANDed, "" = present and non-empty
    "legacy": f'filter: {{attributes: {{type: {ORDER}.created, region: ""}}}}',
    "prefix": f"filters: [{{exact: {{type: {ORDER}.created}}}}, {{prefix: {{source: /shop/eu/}}}}]",
    "suffix": "filters: [{suffix: {type: .cancelled}}]",
    "any-not": (
        "filters: [{any: [{exact: {subject: vip}}, {exact: {region: us}}]},"
        f" {{not: {{exact: {{type: {ORDER}.cancelled}}}}}}]"
    ),
    "cesql": f"filters: [{{cesql: \"type LIKE '{ORDER}.%' AND priority > 3\"}}]",
    "cesql-error": 'filters: [{cesql: "INT(subject) > 5"}]',  # a cast error is no match
    "filters-win": (
        "filter: {attributes: {type: com.example.invoice.created}}\n"
        f"  filters: [{{exact: {{type: {ORDER}.cancelled}}}}]"
    ),
}
if HAS_CEL:
    TRIGGERS["data"] = (
        f"filters: [{{exact: {{type: {ORDER}.created}}}}, {{data: 'data.total > 100'}}]"
    )

EVENTS: list[dict[str, Any]] = [
    {
        "id": "e1",
        "type": f"{ORDER}.created",
        "source": "/shop/eu/1",
        "region": "eu",
        "priority": 5,
        "datacontenttype": "application/json",
        "data": {"total": 150},
    },
    {
        "id": "e2",
        "type": f"{ORDER}.created",
        "source": "/shop/us/1",
        "region": "us",
        "subject": "vip",
        "datacontenttype": "application/json",
        "data": {"total": 50},
    },
    {
        "id": "e3",
        "type": f"{ORDER}.cancelled",
        "source": "/shop/eu/2",
        "priority": 4,
        "subject": "vip",
    },
    {
        "id": "e4",
        "type": f"{ORDER}.created",
        "source": "/shop/eu/3",
        "region": "",
        "datacontenttype": "text/plain",
        "data": "not json",
    },
    {
        "id": "e5",
        "type": "com.example.invoice.created",
        "source": "/billing",
        "region": "us",
        "priority": 9,
    },
    {
        "id": "e6",
        "type": f"{ORDER}.created",
        "source": "/shop/eu/4",
        "subject": "7",
        "data": {"total": 101},
    },
]

EXPECTED: dict[str, set[str]] = {
    "legacy": {"e1", "e2"},  # e4's region is empty, e6 has none
    "prefix": {"e1", "e4", "e6"},
    "suffix": {"e3"},
    "any-not": {"e2", "e5"},  # e3 is vip but cancelled
    "cesql": {"e1", "e3"},  # e6 has no priority: an evaluation error
    "cesql-error": {"e6"},  # 'vip' does not cast to an integer
    "filters-win": {"e3"},
    "data": {"e1", "e6"},  # e4's data is not JSON, e2's total is 50
}


def mesh_yaml(sink: str, triggers: dict[str, str]) -> str:
    """default/default and a trigger per entry, each to its own path on `sink`; the entries are
    the `filter:`/`filters:` YAML of the trigger's spec."""
    specs = {name: yaml.safe_load("spec:\n  " + spec)["spec"] for name, spec in triggers.items()}
    return documents(
        broker_yaml(),
        *(
            trigger_yaml(
                name,
                f"{sink}/{name}",
                attributes=spec.get("filter", {}).get("attributes"),
                filters=spec.get("filters"),
            )
            for name, spec in specs.items()
        ),
    )


@pytest.fixture
def mesh(tmp_path: Path, sink: Sink) -> Iterator[MeshProcess]:
    with MeshProcess(mesh_config(tmp_path, mesh_yaml(sink.url, TRIGGERS))) as process:
        yield process


async def test_each_trigger_receives_exactly_its_events(mesh: MeshProcess, sink: Sink) -> None:
    for event in EVENTS:
        body = json.dumps({"specversion": "1.0", **event}).encode()
        headers = {"content-type": "application/cloudevents+json"}
        status, _, answer = await post(f"{mesh.url}/default/default", headers, body)
        assert status == 202, answer
    expected = {name: EXPECTED[name] for name in TRIGGERS}
    total = sum(len(ids) for ids in expected.values())
    await sink.wait_for(total, timeout=15)
    await asyncio.sleep(0.5)  # anything delivered by mistake arrives by now
    received = {name: [r.headers["ce-id"] for r in sink.on(f"/{name}")] for name in TRIGGERS}
    assert {name: set(ids) for name, ids in received.items()} == expected
    assert sum(len(ids) for ids in received.values()) == total  # and none twice


def test_an_invalid_filter_stops_cemesh_up_naming_the_trigger(tmp_path: Path) -> None:
    broken = {"broken": 'filters: [{any: [{cesql: "type = "}]}]'}
    config = mesh_config(tmp_path, mesh_yaml("http://127.0.0.1:9", broken))
    (tmp_path / "functions").mkdir()
    process = MeshProcess(config, tmp_path / "functions")
    with pytest.raises(RuntimeError) as caught:
        process.start(timeout=30)
    output = str(caught.value)
    assert "Trigger broken" in output
    assert "filters[0].any[0].cesql:" in output
    assert "position 7" in output
