"""Shared fixtures: where the upstream conformance data lives, free ports, and the recording
HTTP sink of the e2e and browser tests."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.contract.conftest import Fleet
    from tests.e2e.harness import Responder, Sink
    from tests.fakekube import FakeKube

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    return Path(os.environ.get("CEMESH_SHARED", REPO.parent / "shared"))


def shared_path(relative: str) -> Path:
    """A path under ../shared, or skip the test with the reason when it is absent."""
    path = shared_dir() / relative
    if not path.exists():
        pytest.skip(f"conformance data not found at {path} (set CEMESH_SHARED)")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def sink_responder() -> Responder | None:
    """How `sink` answers; a test module overrides this fixture to answer otherwise."""
    return None


@pytest.fixture
async def sink(sink_responder: Responder | None) -> AsyncIterator[Sink]:
    """An HTTP sink on 127.0.0.1 recording every request (tests.e2e.harness.Sink)."""
    from tests.e2e.harness import Sink  # the harness imports this module

    async with Sink(responder=sink_responder) as server:
        yield server


@pytest.fixture
def kube_namespaces() -> set[str]:
    """The namespaces `kube` serves; a test module overrides this fixture for others."""
    return {"default"}


@pytest.fixture
def kube(kube_namespaces: set[str]) -> Iterator[FakeKube]:
    """A fake Kubernetes API server (tests/fakekube) validating Tekton objects against the
    official CRDs; skips when the CRDs are not in ../shared."""
    from tests import crds
    from tests.fakekube import FakeKube

    crds.require_shared()
    with FakeKube(namespaces=kube_namespaces) as server:
        yield server


@pytest.fixture
async def fleet() -> AsyncIterator[Fleet]:
    """Meshes on the real RabbitMQ (tests.contract.conftest.Fleet), closed after the test."""
    from tests.contract.conftest import Fleet

    async with Fleet() as fleet:
        yield fleet
