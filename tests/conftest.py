"""Shared fixtures: where the upstream conformance data lives, and free ports."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

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
