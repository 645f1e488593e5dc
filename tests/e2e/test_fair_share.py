"""Issue 12 item 6: fair share under slow clients. Tenant A parks request-reply waits nobody
answers and sends bodies a byte at a time; tenant B keeps being served. The real app runs
in-process (httpx's ASGI transport) with the guard's per-tenant share, the per-tenant cap on
pending request-reply waits and the body read timeout."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from gateway.http.app import create_app
from gateway.http.auth import hash_token
from gateway.settings import Settings
from tests.builders import broker_yaml
from tests.e2e.harness import write

EVENT = {"ce-specversion": "1.0", "ce-source": "/fair", "ce-type": "com.example.nobody.listens"}


def tenants(directory: Path) -> Settings:
    write(
        directory / "config" / "mesh.yaml",
        broker_yaml("default", "team-a") + "---\n" + broker_yaml("default", "team-b"),
    )
    write(
        directory / "tokens.yaml",
        "tokens:\n"
        f"  - {{name: a, sha256: {hash_token('tok-a')}, namespaces: [team-a]}}\n"
        f"  - {{name: b, sha256: {hash_token('tok-b')}, namespaces: [team-b]}}\n",
    )
    return Settings(
        config=directory / "config",
        functions=directory / "none",
        tokens_file=directory / "tokens.yaml",
        max_concurrency=40,
        tenant_concurrency=20,
        max_pending_requests=8,
        body_timeout=1.0,
    )


def headers(token: str, event_id: str) -> dict[str, str]:
    return {**EVENT, "ce-id": event_id, "authorization": f"Bearer {token}"}


async def trickle() -> AsyncIterator[bytes]:
    for _ in range(20):
        yield b"x"
        await asyncio.sleep(0.25)


async def test_a_misbehaving_tenant_does_not_starve_another(tmp_path: Path) -> None:
    settings = tenants(tmp_path)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://mesh", timeout=10
        ) as http:
            waits = [
                asyncio.create_task(
                    http.post(
                        "/team-a/default/request?timeout=3",
                        headers=headers("tok-a", f"wait-{n}"),
                        content=b"{}",
                    )
                )
                for n in range(100)
            ]
            slow = [
                asyncio.create_task(
                    http.post(
                        "/team-a/default", headers=headers("tok-a", f"slow-{n}"), content=trickle()
                    )
                )
                for n in range(20)
            ]
            await asyncio.sleep(0.3)  # A now holds what it may
            served = [
                (await http.post("/team-b/default", headers=headers("tok-b", f"b-{n}"))).status_code
                for n in range(50)
            ]
            a_waits = [r.status_code for r in await asyncio.gather(*waits)]
            a_slow = [r.status_code for r in await asyncio.gather(*slow)]
    assert served == [202] * 50
    assert a_waits.count(504) == 8  # its pending cap: the others are refused at once
    assert set(a_waits) <= {504, 429, 503}
    assert set(a_slow) <= {408, 503}
    assert 408 in a_slow
