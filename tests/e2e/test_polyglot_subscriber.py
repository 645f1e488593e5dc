"""Polyglot proof (issue 2): a Node.js subscriber built on the npm `cloudevents` package gets
what a trigger delivers, and its SDK reads the same event we sent.

The package is installed once into a cache directory (`.cache/cemesh-npm`, or
`$CEMESH_NPM_CACHE`), not into the repository; the test skips, saying why, only when npm cannot
reach the registry (or is not installed at all).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.builders import binary, broker_yaml, documents, trigger_yaml
from tests.conftest import REPO, free_port
from tests.e2e.harness import MeshProcess, mesh_config, post, write
from tests.filelock import folder_lock

pytestmark = pytest.mark.e2e

CACHE = Path(os.environ.get("CEMESH_NPM_CACHE") or REPO / ".cache" / "cemesh-npm")
PACKAGE = "cloudevents@^8.0.2"
NETWORK_CODES = ("ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED", "ETIMEDOUT", "ECONNRESET", "network")

SUBSCRIBER_JS = r"""
// A plain Node.js HTTP server whose only CloudEvents code is the npm `cloudevents` SDK.
const http = require('node:http');
const { HTTP } = require('cloudevents');

const port = Number(process.argv[2]);
http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', () => {
    const body = Buffer.concat(chunks).toString('utf8');
    try {
      const event = HTTP.toEvent({ headers: req.headers, body });
      event.validate();
      console.log(JSON.stringify({ ok: true, event: event.toJSON(), prefer: req.headers.prefer }));
      res.writeHead(202);
      res.end();
    } catch (err) {
      console.log(JSON.stringify({ ok: false, error: String(err) }));
      res.writeHead(400);
      res.end(String(err));
    }
  });
}).listen(port, '127.0.0.1', () => console.log(JSON.stringify({ listening: port })));
"""


def mesh_yaml(port: int) -> str:
    polyglot = [{"exact": {"type": "com.example.polyglot"}}]
    subscriber = f"http://127.0.0.1:{port}/events"
    return documents(broker_yaml(), trigger_yaml("to-node", subscriber, filters=polyglot))


@pytest.fixture(scope="module")
def node_modules() -> Path:
    """The `cloudevents` npm package in the cache directory (installed on first use)."""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        pytest.skip("node and npm are not installed")
    modules = CACHE / "node_modules"
    with folder_lock(CACHE):
        if not (modules / "cloudevents" / "package.json").exists():
            result = subprocess.run(
                [npm, "install", "--prefix", str(CACHE), "--no-audit", "--no-fund",
                 "--prefer-offline", "--loglevel=error", PACKAGE],
                capture_output=True, text=True, timeout=300, check=False,
            )  # fmt: skip
            if result.returncode != 0:
                output = result.stdout + result.stderr
                if any(code in output for code in NETWORK_CODES):
                    pytest.skip(f"npm cannot reach the registry: {output.strip()[-300:]}")
                pytest.fail(f"npm install {PACKAGE} failed:\n{output}")
    return modules


class NodeSubscriber:
    """The subscriber process; every line it prints is one JSON object."""

    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.port = port

    async def next(self, timeout: float = 15.0) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        assert line, "the subscriber exited"
        message: dict[str, Any] = json.loads(line)
        return message


@pytest.fixture
async def subscriber(tmp_path: Path, node_modules: Path) -> AsyncIterator[NodeSubscriber]:
    script = write(tmp_path / "subscriber.js", SUBSCRIBER_JS)
    port = free_port()
    node = shutil.which("node")
    assert node is not None
    process = await asyncio.create_subprocess_exec(
        node,
        str(script),
        str(port),
        env={**os.environ, "NODE_PATH": str(node_modules)},
        stdout=asyncio.subprocess.PIPE,
    )
    sub = NodeSubscriber(process, port)
    assert await sub.next() == {"listening": port}
    yield sub
    process.terminate()
    await process.wait()


@pytest.fixture
def mesh(tmp_path: Path, subscriber: NodeSubscriber) -> Iterator[MeshProcess]:
    with MeshProcess(mesh_config(tmp_path, mesh_yaml(subscriber.port))) as process:
        yield process


async def _post(url: str, headers: dict[str, str], body: bytes) -> int:
    status, _, _ = await post(url, headers, body)
    return status


async def test_node_sdk_reads_a_binary_event_as_sent(
    mesh: MeshProcess, subscriber: NodeSubscriber
) -> None:
    headers = binary("poly-1", "com.example.polyglot", "/tests/polyglot", **{"ce-tenant": "acme"})
    headers.update({"ce-subject": "order-42", "ce-time": "2026-11-22T10:00:00Z"})
    headers["content-type"] = "application/json"
    assert await _post(mesh.url + "/default/default", headers, b'{"qty": 2, "item": "book"}') == 202
    got = await subscriber.next()
    assert got["ok"], got
    event = got["event"]
    assert {k: event[k] for k in ("id", "source", "type", "subject", "time", "tenant")} == {
        "id": "poly-1",
        "source": "/tests/polyglot",
        "type": "com.example.polyglot",
        "subject": "order-42",
        "time": "2026-11-22T10:00:00.000Z",  # the JS SDK normalises time to milliseconds
        "tenant": "acme",
    }
    assert event["datacontenttype"] == "application/json"
    assert event["data"] == {"qty": 2, "item": "book"}
    assert event["knativebrokerttl"] == "255"
    assert got["prefer"] == "reply"


async def test_node_sdk_reads_a_structured_event_delivered_in_binary_mode(
    mesh: MeshProcess, subscriber: NodeSubscriber
) -> None:
    sent = {
        "specversion": "1.0",
        "id": "poly-2",
        "source": "/tests/polyglot",
        "type": "com.example.polyglot",
        "datacontenttype": "application/json",
        "data": {"greeting": "héllo"},
    }
    status = await _post(
        mesh.url + "/",
        {"content-type": "application/cloudevents+json"},
        json.dumps(sent).encode(),
    )
    assert status == 202
    got = await subscriber.next()
    assert got["ok"], got
    assert got["event"]["id"] == "poly-2"
    assert got["event"]["data"] == {"greeting": "héllo"}
