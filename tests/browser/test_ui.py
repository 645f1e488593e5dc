"""The live view in a real browser: `cemesh up`, /ui in Debian's headless chromium (driven by
playwright-core from npm, no browser download), events posted while the page watches, and
their rows checked with the triggers they matched and the delivery outcomes. The screenshot
is kept as an artifact in tests/artifacts/ui.png.

Skips, saying why, when chromium or node is absent or npm cannot install playwright-core.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.builders import binary, broker_yaml, documents, trigger_yaml
from tests.conftest import REPO
from tests.e2e import harness
from tests.e2e.harness import MeshProcess, Received, Responder, Sink

pytestmark = pytest.mark.e2e

HERE = Path(__file__).resolve().parent
ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def mesh_yaml(sink: str) -> str:
    return documents(
        broker_yaml(),
        trigger_yaml("orders", f"{sink}/orders", type="com.example.order"),
        trigger_yaml("audit", f"{sink}/audit", type="com.example.order", delivery={"retry": 0}),
        trigger_yaml("greetings", f"{sink}/greetings", type="com.example.greeting"),
    )


def _playwright() -> Path:
    """tests/browser/node_modules, installed from the lock file on first use."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"chromium not found at {CHROMIUM} (apt-get install chromium)")
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node/npm not installed")
    module = HERE / "node_modules" / "playwright-core"
    if not module.exists():
        result = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=HERE,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if result.returncode != 0 or not module.exists():
            pytest.skip(f"npm could not install playwright-core: {result.stderr.strip()[-300:]}")
    return module


def _answer(item: Received) -> web.Response:
    return (
        web.Response(status=500, text="audit is down") if item.path == "/audit" else web.Response()
    )


@pytest.fixture
def sink_responder() -> Responder:
    return _answer


@pytest.fixture
def mesh(tmp_path: Path, sink: Sink) -> Iterator[MeshProcess]:
    _playwright()
    config = harness.mesh_config(tmp_path, mesh_yaml(sink.url))
    harness.copy_function(tmp_path / "functions", "greeter")
    with MeshProcess(config, tmp_path / "functions") as process:
        yield process


async def _post(url: str, event_id: str, event_type: str, data: bytes = b"{}") -> int:
    headers = binary(event_id, event_type, "/browser-test", **{"content-type": "application/json"})
    status, _, _ = await harness.post(url, headers, data)
    return status


def _chip(row: str, trigger: str, outcome: str) -> str:
    return f'{row} .chip[data-trigger="{trigger}"][data-outcome="{outcome}"]'


async def _line(stream: asyncio.StreamReader, what: str) -> str:
    try:
        raw = await asyncio.wait_for(stream.readline(), 60)
    except TimeoutError:
        raise AssertionError(f"the browser driver did not report {what}") from None
    return raw.decode().strip()


async def test_ui_shows_events_with_their_triggers_and_outcomes(mesh: MeshProcess) -> None:
    async with aiohttp.ClientSession() as session, session.get(mesh.url + "/ui") as r:
        if r.status == 404:
            pytest.skip("observability is not wired into gateway/http/app.py yet")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS / "ui.png"
    screenshot.unlink(missing_ok=True)
    driver = await asyncio.create_subprocess_exec(
        "node",
        str(HERE / "ui_driver.mjs"),
        mesh.url,
        str(screenshot),
        cwd=HERE,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert driver.stdin is not None
    assert driver.stdout is not None
    assert driver.stderr is not None
    try:
        ready = await _line(driver.stdout, "READY")
        assert ready == "READY", ready + (await driver.stderr.read()).decode()
        ingress = mesh.url + "/default/default"
        assert await _post(ingress, "order-1", "com.example.order") == 202
        assert await _post(ingress, "stray-1", "com.example.unrouted") == 202
        assert (
            await _post(ingress, "greet-1", "com.example.greet.request", b'{"name":"Ada"}') == 202
        )
        selectors = [
            _chip('tr[data-event-id="order-1"]', "default/orders", "ok"),
            _chip('tr[data-event-id="order-1"]', "default/audit", "failed"),
            'tr[data-event-id="stray-1"] .chip.none',
            'tr[data-event-id="greet-1"] .chip[data-outcome="ok"]',
            _chip("tr.event:has(.reply)", "default/greetings", "ok"),
        ]
        driver.stdin.write((json.dumps(selectors) + "\n").encode())
        await driver.stdin.drain()
        report: dict[str, Any] = json.loads(await _line(driver.stdout, "the table"))
        await asyncio.wait_for(driver.wait(), 30)
    finally:
        if driver.returncode is None:
            driver.kill()
            await driver.wait()

    assert report["problems"] == []
    assert report["status"] == "live"
    rows = {row["id"]: row for row in report["rows"]}
    order = rows["order-1"]
    assert order["type"] == "com.example.order"
    chips = {chip["trigger"]: chip for chip in order["chips"]}
    assert chips["default/orders"]["text"] == "default/orders200"  # name, then the status
    assert chips["default/audit"]["outcome"] == "failed"
    assert chips["default/audit"]["text"] == "default/audit500"
    assert [chip["text"] for chip in rows["stray-1"]["chips"]] == ["no trigger matched"]
    (greeter,) = rows["greet-1"]["chips"]
    assert greeter["trigger"].startswith("default/greeter")
    (reply,) = [row for row in report["rows"] if row["reply"]]
    assert reply["type"] == "com.example.greeting"
    assert reply["reply"] == "↩ reply to greet-1"
    assert report["counters"]["n-events"] == 4
    assert report["counters"]["n-failed"] == 1
    assert screenshot.stat().st_size > 10_000
