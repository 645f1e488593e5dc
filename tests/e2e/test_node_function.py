"""The Node.js function under `cemesh up` (issue 8): its own npm tests, a trigger delivering to
it with its reply reaching a sink, and the clear line when node or npm is missing.

npm dependencies are installed (once, under the same lock `cemesh up` takes) before these
tests; they skip, saying why, only when npm cannot reach the registry or node is absent.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.hosting.node import Tools, Unavailable, ensure_dependencies
from tests.builders import binary, broker_yaml, documents, trigger_yaml
from tests.conftest import REPO
from tests.e2e.harness import MeshProcess, Sink, mesh_config, post

pytestmark = pytest.mark.e2e

HELLO = REPO / "functions" / "hello-node"
NETWORK_CODES = ("ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED", "ETIMEDOUT", "ECONNRESET", "network")


def mesh_yaml(sink: str) -> str:
    replies = trigger_yaml("hello-replies", f"{sink}/replies", type="com.example.hello.reply")
    return documents(broker_yaml(), replies)


def install_hello_node() -> None:
    """node_modules for functions/hello-node, or skip when npm cannot reach the registry."""
    tools = Tools.from_path()
    if tools.node is None or tools.npm is None:
        pytest.skip("node and npm are needed for the Node.js function (Node.js 20+)")
    try:
        asyncio.run(ensure_dependencies(HELLO, tools))
    except Unavailable as exc:
        if any(code in str(exc) for code in NETWORK_CODES):
            pytest.skip(f"npm cannot reach the registry: {exc}")
        raise


@pytest.fixture(scope="module")
def hello_node() -> Path:
    install_hello_node()
    return HELLO


@pytest.fixture
def functions_dir(tmp_path: Path, hello_node: Path) -> Path:
    """A functions directory holding only hello-node (its node_modules shared)."""
    directory = tmp_path / "functions"
    directory.mkdir()
    (directory / "hello-node").symlink_to(hello_node, target_is_directory=True)
    return directory


@pytest.fixture
def mesh(tmp_path: Path, sink: Sink, functions_dir: Path) -> Iterator[MeshProcess]:
    with MeshProcess(mesh_config(tmp_path, mesh_yaml(sink.url)), functions_dir) as process:
        yield process


def test_npm_test_passes(hello_node: Path) -> None:
    npm = shutil.which("npm")
    assert npm is not None
    result = subprocess.run(
        [npm, "test"], cwd=hello_node, capture_output=True, text=True, timeout=120, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "# fail 0" in output


async def test_trigger_delivers_to_node_and_the_reply_reaches_a_sink(
    mesh: MeshProcess, sink: Sink
) -> None:
    headers = binary("node-1", "com.example.hello.request", "/people")
    headers["content-type"] = "application/json"
    status, _, _ = await post(mesh.url + "/default/default", headers, b'{"name": "Ada"}')
    assert status == 202
    (got,) = await sink.wait_for(1, path="/replies", timeout=15)
    assert got.headers["ce-type"] == "com.example.hello.reply"
    assert got.headers["ce-source"] == "/functions/hello-node"
    assert got.headers["ce-subject"] == "node-1"
    assert got.headers["ce-knativebrokerttl"] == "254"  # a reply, re-ingested by the broker
    data = json.loads(got.body)
    assert data["message"] == "Hello, Ada!"
    assert data["runtime"].startswith("node v")
    output = mesh.stop()
    assert "hello-node (node, invoke cloudevent)" in output
    assert "function hello-node (node) runs at http://127.0.0.1:" in output


@pytest.mark.parametrize(
    ("tools", "reason"),
    [
        (("node",), "its node_modules is not installed and npm is not on PATH"),
        ((), "node is not on PATH"),
    ],
    ids=["no-npm", "no-node"],
)
def test_missing_tools_skip_the_function_with_one_clear_line(
    tmp_path: Path, tools: tuple[str, ...], reason: str
) -> None:
    functions = tmp_path / "functions"
    shutil.copytree(HELLO, functions / "hello-node", ignore=shutil.ignore_patterns("node_modules"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in tools:
        found = shutil.which(tool)
        if found is None:
            pytest.skip(f"{tool} is not installed")
        (bin_dir / tool).symlink_to(found)
    config = mesh_config(tmp_path, mesh_yaml("http://127.0.0.1:9"))
    mesh = MeshProcess(config, functions, env={"PATH": str(bin_dir)})
    with mesh:
        pass  # it started and answered /readyz without the function
    lines = [line for line in mesh.output.splitlines() if "hello-node (node) skipped" in line]
    assert len(lines) == 1, mesh.output
    assert reason in lines[0]
    assert "triggers routed to it will fail: default/hello-node-sub-0" in lines[0]


def test_node_host_install_command_warns_instead_of_failing(tmp_path: Path) -> None:
    """`make install` runs it: a Python-only machine without npm must not fail."""
    functions = tmp_path / "functions"
    shutil.copytree(HELLO, functions / "hello-node", ignore=shutil.ignore_patterns("node_modules"))
    result = subprocess.run(
        [sys.executable, "-m", "gateway.hosting.node", "install", str(functions)],
        cwd=REPO,
        env={**os.environ, "PATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "function hello-node: its node_modules is not installed and npm is not on PATH" in (
        result.stderr
    )
