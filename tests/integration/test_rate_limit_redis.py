"""Per-token rate limits are shared by replicas through Redis state (issue 9, item 4)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from gateway.http.auth import hash_token
from tests.e2e.test_gateway_e2e import GREET, client

pytestmark = pytest.mark.connected


async def test_two_replicas_share_one_limit(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(
        f"tokens:\n  - {{name: shared, sha256: {hash_token('t')}, rate: 0.5, burst: 3}}\n"
    )
    state_url = f"redis://127.0.0.1:6379/0?prefix=cemesh-test-{uuid.uuid4().hex[:10]}"
    headers = {**GREET, "ce-id": "r", "authorization": "Bearer t"}
    async with (
        client(tokens_file=tokens, state_url=state_url) as a,
        client(tokens_file=tokens, state_url=state_url) as b,
    ):
        statuses = [
            (await http.post("/", headers=headers, content=b"{}")).status_code
            for http in (a, b, a, b)
        ]
        last = await b.post("/", headers=headers, content=b"{}")
    assert statuses == [202, 202, 202, 429]
    assert last.status_code == 429
    assert int(last.headers["retry-after"]) >= 1
