"""Shared fixtures: where the upstream conformance data lives, free ports, and the recording
HTTP sink of the e2e and browser tests."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.e2e.harness import Responder, Sink

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
