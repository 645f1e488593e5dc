"""Mesh state end to end (issue 5): `cemesh up` in a subprocess on the memory state and on the
real Redis (`connected`), a sink run by the test, and the `cemesh replay | events | dlq`
commands driven as a user would. Also: Redis unreachable (events still flow), a stateful
function hosted by the mesh, and a replica killed mid-delivery on RabbitMQ."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import aiohttp
import pytest
from aiohttp import web

from tests.builders import broker_yaml, documents, trigger_yaml
from tests.conftest import REPO, free_port
from tests.e2e.harness import (
    CEMESH,
    MeshProcess,
    Received,
    Sink,
    cemesh,
    delete_redis_prefix,
    mesh_config,
    write,
)

pytestmark = pytest.mark.e2e

REDIS_URL: Final = "redis://127.0.0.1:6379/0"
AMQP_URL: Final = "amqp://guest:guest@127.0.0.1:5672/"


def mesh_yaml(sink: str, ns: str) -> str:
    def to_sink(name: str, path: str, event_type: str | None, **rest: Any) -> str:
        return trigger_yaml(name, f"{sink}/{path}", namespace=ns, type=event_type, **rest)

    return documents(
        broker_yaml(namespace=ns),
        to_sink("orders", "orders", "com.example.order"),
        to_sink("audit", "audit", None),
        to_sink("flaky", "flaky", "com.example.flaky", delivery={"retry": 0}),
        to_sink("deployments-result", "result", "com.example.deployments.result"),
    )


class Switch:
    """The sink's answers: /flaky fails with 500 until `healthy`."""

    def __init__(self) -> None:
        self.healthy = False

    def __call__(self, item: Received) -> web.Response:
        if item.path == "/flaky" and not self.healthy:
            return web.Response(status=500, text="flaky is down")
        return web.Response(status=200)


@pytest.fixture
def switch() -> Switch:
    return Switch()


@pytest.fixture
def sink_responder(switch: Switch) -> Switch:
    return switch


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.connected)])
def state_url(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "memory":
        yield "memory://"
        return
    prefix = f"cemesh-e2e-{uuid.uuid4().hex[:12]}"
    yield f"{REDIS_URL}?prefix={prefix}"
    asyncio.run(delete_redis_prefix(prefix))


def _config(tmp_path: Path, sink: Sink, ns: str = "default") -> Path:
    return mesh_config(tmp_path, mesh_yaml(sink.url, ns))


@pytest.fixture
def broker_url() -> str:
    """The broker of `mesh`; tests marked @BROKERS also run on RabbitMQ."""
    return "memory://"


@pytest.fixture
def ns(broker_url: str) -> Iterator[str]:
    """The namespace of the test's objects: unique on RabbitMQ, whose queues outlive a mesh."""
    if broker_url.startswith("memory"):
        yield "default"
        return
    name = f"st-{uuid.uuid4().hex[:8]}"
    yield name
    asyncio.run(_drop_namespace(name))


async def _drop_namespace(ns: str) -> None:
    """Delete the queues and exchanges a test namespace left in RabbitMQ."""
    from brokers.rabbitmq.broker import RabbitBroker
    from brokers.triggers import MeshConfig

    broker = RabbitBroker(AMQP_URL)
    planned = [n for n in await broker.plan_prune(MeshConfig({}, [])) if f".{ns}." in n]
    if planned:
        await broker.prune(planned)


BROKERS: Final = pytest.mark.parametrize(
    "broker_url",
    ["memory://", pytest.param(AMQP_URL, marks=pytest.mark.connected)],
    ids=["memory-broker", "rabbitmq"],
)


@pytest.fixture
def mesh(
    tmp_path: Path, sink: Sink, state_url: str, broker_url: str, ns: str
) -> Iterator[MeshProcess]:
    extra = ["--state", state_url, "--broker", broker_url]
    with MeshProcess(_config(tmp_path, sink, ns), extra=extra) as process:
        yield process


def headers(id_: str, type_: str = "com.example.order") -> dict[str, str]:
    return {
        "ce-specversion": "1.0",
        "ce-id": id_,
        "ce-source": "/shop",
        "ce-type": type_,
        "content-type": "application/json",
    }


async def post(url: str, head: dict[str, str], body: bytes = b"{}") -> tuple[int, dict[str, str]]:
    async with aiohttp.ClientSession() as session, session.post(url, headers=head, data=body) as r:
        await r.read()
        return r.status, {k.lower(): v for k, v in r.headers.items()}


async def cli(mesh: MeshProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `cemesh ...` against the mesh, off the event loop (the sink must keep answering)."""
    return await asyncio.to_thread(cemesh, *args, "--url", mesh.url, timeout=60)


async def test_the_same_event_twice_is_delivered_once(
    mesh: MeshProcess, sink: Sink, ns: str
) -> None:
    url = mesh.url + f"/{ns}/default"
    first = await post(url, headers("dup-1"))
    second = await post(url, headers("dup-1"))
    assert first[0] == second[0] == 202
    assert "cemesh-duplicate" not in first[1]
    assert second[1]["cemesh-duplicate"] == "true"
    assert second[1]["cemesh-duplicate-ids"] == "dup-1"
    batch = [
        {"specversion": "1.0", "id": i, "source": "/shop", "type": "com.example.order"}
        for i in ("dup-1", "dup-2")
    ]
    status, head = await post(
        url, {"content-type": "application/cloudevents-batch+json"}, json.dumps(batch).encode()
    )
    assert status == 202
    assert (head["cemesh-duplicate"], head["cemesh-duplicate-ids"]) == ("partial", "dup-1")
    await sink.wait_for(2, path="/orders")
    await asyncio.sleep(0.5)
    assert sorted(r.headers["ce-id"] for r in sink.on("/orders")) == ["dup-1", "dup-2"]


@BROKERS
async def test_events_and_replay_through_the_cli(mesh: MeshProcess, sink: Sink, ns: str) -> None:
    url = mesh.url + f"/{ns}/default"
    for i in range(3):
        assert (await post(url, headers(f"o-{i}")))[0] == 202
    assert (await post(url, headers("n-1", "com.example.note")))[0] == 202
    await sink.wait_for(3, path="/orders")
    await sink.wait_for(4, path="/audit")

    shown = await cli(mesh, "events", "--broker", f"{ns}/default")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert len(lines) == 4
    assert "com.example.order  /shop  o-0" in lines[0]
    assert lines[-1].split()[1].endswith("Z")

    dry = await cli(mesh, "replay", "--broker", f"{ns}/default", "--since", "10m", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith(f"would replay 4 events of {ns}/default to all triggers")

    only = await cli(
        mesh,
        "replay",
        "--broker",
        f"{ns}/default",
        "--type",
        "com.example.order",
        "--trigger",
        "orders",
    )
    assert only.returncode == 0, only.stderr
    assert only.stdout.startswith(f"replayed 3 events of {ns}/default to trigger {ns}/orders")
    again = await sink.wait_for(6, path="/orders")
    replayed = again[3:]
    assert sorted(r.headers["ce-id"] for r in replayed) == ["o-0", "o-1", "o-2"]
    assert all(r.headers["ce-cemeshreplay"].startswith("r-") for r in replayed)
    assert all("ce-cemeshtarget" not in r.headers for r in replayed)

    everything = await cli(
        mesh, "replay", "--broker", f"{ns}/default", "--from", lines[3].split()[0]
    )
    assert everything.stdout.startswith(f"replayed 1 event of {ns}/default to all triggers")
    await sink.wait_for(5, path="/audit")
    await asyncio.sleep(0.5)
    assert len(sink.on("/audit")) == 5  # the targeted replay did not reach `audit`
    assert len(sink.on("/orders")) == 6

    bad = await cli(mesh, "replay", "--broker", f"{ns}/nope")
    assert (bad.returncode, bad.stderr.count("\n")) == (1, 1)
    assert f"broker {ns}/nope does not exist (HTTP 404)" in bad.stderr
    worse = await cli(mesh, "replay", "--broker", f"{ns}/default", "--since", "last tuesday")
    assert worse.returncode == 2
    assert "--since" in worse.stderr


async def test_events_follow_prints_new_events(mesh: MeshProcess, sink: Sink, ns: str) -> None:
    follower = await asyncio.create_subprocess_exec(
        *CEMESH,
        "events",
        "--broker",
        f"{ns}/default",
        "--follow",
        "--url",
        mesh.url,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert follower.stdout is not None
    lines: list[str] = []
    try:
        await asyncio.sleep(0.5)
        for i in range(2):
            await post(mesh.url + f"/{ns}/default", headers(f"f-{i}"))
        while len(lines) < 2:
            lines.append((await asyncio.wait_for(follower.stdout.readline(), 15)).decode())
    finally:
        follower.send_signal(signal.SIGINT)
        rest, _ = await asyncio.wait_for(follower.communicate(), 10)
    out = "".join(lines) + rest.decode()
    assert [line.split()[4] for line in out.splitlines()] == ["f-0", "f-1"]


@BROKERS
async def test_dead_letters_through_the_cli(
    mesh: MeshProcess, sink: Sink, switch: Switch, ns: str
) -> None:
    url = mesh.url + f"/{ns}/default"
    for i in range(2):
        await post(url, headers(f"x-{i}", "com.example.flaky"))
    await sink.wait_for(2, path="/flaky")
    deadline = time.monotonic() + 15
    while True:  # dead-lettering is asynchronous (a confirmed publish on RabbitMQ)
        listed = await cli(mesh, "dlq", "list", "--trigger", f"{ns}/flaky")
        assert listed.returncode == 0, listed.stderr
        rows = listed.stdout.splitlines()
        if rows[-1].startswith("2 ") or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.3)
    assert rows[-1] == f"2 dead letters for {ns}/flaky"
    assert "com.example.flaky  /shop  x-0  HTTP 500" in rows[0]
    first_id = rows[0].split()[0]

    shown = await cli(mesh, "dlq", "show", "--trigger", f"{ns}/flaky", first_id)
    letter = json.loads(shown.stdout)
    assert letter["error"] == {
        "destination": f"{sink.url}/flaky",
        "code": "500",
        "data": "flaky is down",
    }
    assert letter["event"]["id"] == "x-0"

    switch.healthy = True
    replayed = await cli(mesh, "dlq", "replay", "--trigger", f"{ns}/flaky", first_id)
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout.strip() == f"replayed 1 dead letter of {ns}/flaky to it: {first_id}"
    got = await sink.wait_for(3, path="/flaky")
    assert got[-1].headers["ce-id"] == "x-0"
    assert "ce-knativeerrorcode" not in got[-1].headers
    await asyncio.sleep(0.3)
    assert len(sink.on("/audit")) == 2  # a dead-letter replay goes to its trigger only

    missing = await cli(mesh, "dlq", "show", "--trigger", f"{ns}/flaky", "no-such-id")
    assert missing.returncode == 1
    assert "no dead letter 'no-such-id'" in missing.stderr
    purged = await cli(mesh, "dlq", "purge", "--trigger", f"{ns}/flaky")
    assert purged.stdout.strip() == f"purged 1 dead letter of {ns}/flaky"
    empty = await cli(mesh, "dlq", "list", "--trigger", f"{ns}/flaky")
    assert empty.stdout.strip() == f"0 dead letters for {ns}/flaky"
    unknown = await cli(mesh, "dlq", "list", "--trigger", f"{ns}/ghost")
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == f"cemesh: trigger {ns}/ghost does not exist (HTTP 404)"


async def test_events_still_flow_when_redis_is_unreachable(tmp_path: Path, sink: Sink) -> None:
    closed = f"redis://127.0.0.1:{free_port()}/0"
    with MeshProcess(_config(tmp_path, sink), extra=["--state", closed]) as mesh:
        started = time.monotonic()
        statuses = [
            (await post(mesh.url + "/default/default", headers("down-1")))[0] for _ in range(2)
        ]
        assert statuses == [202, 202]
        assert time.monotonic() - started < 3
        # dedup failed open: both copies delivered (at least once), none dropped
        await sink.wait_for(2, path="/orders")
        async with aiohttp.ClientSession() as session, session.get(mesh.url + "/admin/state") as r:
            status = await r.json()
        assert status["backend"] == "redis"
        assert status["counters"]["dedup_unavailable"] >= 1
        shown = await cli(mesh, "events", "--broker", "default/default")
        assert shown.returncode == 1
        assert "(HTTP 503)" in shown.stderr
        assert shown.stderr.count("\n") == 1
        output = mesh.stop()
    assert "dedup skipped (fail open)" in output


CDEVENT: Final = {
    "context": {
        "specversion": "0.5.1",
        "id": "cd-1",
        "source": "/ci",
        "type": "dev.cdevents.service.deployed.0.3.0",
        "timestamp": "2026-11-22T10:00:00Z",
    },
    "subject": {
        "id": "shop",
        "content": {"environment": {"id": "prod"}, "artifactId": "pkg:oci/shop@sha256%3Aabc"},
    },
}


async def test_a_stateful_function_keeps_its_state(
    tmp_path: Path, sink: Sink, state_url: str
) -> None:
    config = _config(tmp_path, sink)
    with MeshProcess(config, REPO / "functions", extra=["--state", state_url]) as mesh:
        url = mesh.url + "/default/default"
        deployed = {**headers("cd-1", "dev.cdevents.service.deployed.0.3.0"), "ce-source": "/ci"}
        assert (await post(url, deployed, json.dumps(CDEVENT).encode()))[0] == 202
        await sink.wait_for(1, path="/audit")
        await asyncio.sleep(0.3)
        query = headers("q-1", "com.example.deployments.query")
        assert (await post(url, query, b'{"environment": "prod"}'))[0] == 202
        (reply,) = await sink.wait_for(1, path="/result")
    answer = json.loads(reply.body)
    assert answer["environment"] == "prod"
    assert answer["services"]["shop"]["artifactId"] == "pkg:oci/shop@sha256%3Aabc"
    if state_url.startswith("redis"):
        from redis.asyncio import Redis

        prefix = state_url.split("prefix=")[1]
        client = Redis.from_url(REDIS_URL)
        try:
            assert await client.hexists(f"{prefix}:default:fn:deployments:env:prod", "shop")
        finally:
            await client.aclose()


# a replica killed mid-delivery (RabbitMQ)


class HoldingProxy:
    """TCP proxy to Redis for one replica. After `hold()`, the delivery mark (a SET of a
    `:delivered:` key) still reaches Redis, but its connection gets no answer any more: the
    replica is stuck between marking the delivery and acking it, where the test kills it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.holding = False
        self.mark_forwarded = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    def hold(self) -> None:
        self.holding = True

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", 6379)
        self._writers += [writer, up_writer]
        muted = False

        async def commands() -> None:
            nonlocal muted
            while data := await reader.read(65536):
                if self.holding and b":delivered:" in data:  # the delivery mark's key
                    muted = True
                    self.mark_forwarded.set()
                up_writer.write(data)
                await up_writer.drain()

        async def answers() -> None:
            while data := await up_reader.read(65536):
                if not muted:
                    writer.write(data)
                    await writer.drain()

        for coro in (commands(), answers()):
            task = asyncio.create_task(coro)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)


@pytest.mark.connected
@pytest.mark.slow
async def test_a_replica_killed_after_delivering_is_not_followed_by_a_second_delivery(
    tmp_path: Path,
) -> None:
    ns = f"kill-{uuid.uuid4().hex[:8]}"
    prefix = f"cemesh-e2e-{uuid.uuid4().hex[:12]}"
    proxy = HoldingProxy()
    await proxy.start()

    def responder(item: Received) -> web.Response:
        proxy.hold()  # from now on replica A's Redis answers are held back
        return web.Response(status=200)

    sink = await Sink(responder=responder).start()
    config = _config(tmp_path, sink, ns)
    amqp = ["--broker", AMQP_URL]
    replica_a = MeshProcess(
        config, extra=[*amqp, "--state", f"redis://127.0.0.1:{proxy.port}/0?prefix={prefix}"]
    )
    replica_b = MeshProcess(config, extra=[*amqp, "--state", f"{REDIS_URL}?prefix={prefix}"])
    try:
        await asyncio.to_thread(replica_a.start)  # the proxy runs on this loop: do not block it
        status, _ = await post(f"{replica_a.url}/{ns}/default", headers("kill-1"))
        assert status == 202
        await sink.wait_for(1, path="/orders")
        await asyncio.wait_for(proxy.mark_forwarded.wait(), 10)
        assert replica_a.proc is not None
        replica_a.proc.send_signal(signal.SIGKILL)  # marked as delivered, never acked
        await asyncio.to_thread(replica_a.stop)
        await asyncio.to_thread(replica_b.start)  # RabbitMQ redelivers the unacked message to B
        await asyncio.sleep(3.0)
        assert [r.headers["ce-id"] for r in sink.on("/orders")] == ["kill-1"]
    finally:
        output_b = await asyncio.to_thread(replica_b.stop)
        await asyncio.to_thread(replica_a.stop)
        await sink.stop()
        await proxy.stop()
        await delete_redis_prefix(prefix)
        await _drop_namespace(ns)
    assert "already delivered, not delivered again" in output_b, output_b


@pytest.mark.parametrize(
    ("state", "annotation", "message"),
    [
        ("postgres://db/0", None, "--state (CEMESH_STATE_URL): unsupported state URL"),
        ("redis://h/0?log_maxlen=lots", None, "log_maxlen and timeout must be numbers"),
        ("memory://", "cemesh.dev/dedup-window: soon", "Broker default: cemesh.dev/dedup-window"),
        ("memory://", "cemesh.dev/event-log-length: '-1'", "must be a non-negative integer"),
    ],
)
def test_bad_state_settings_exit_2_with_one_line(
    tmp_path: Path, state: str, annotation: str | None, message: str
) -> None:
    meta = "{name: default, annotations: {" + annotation + "}}" if annotation else "{name: default}"
    broker = f"apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {meta}\n"
    config = write(tmp_path / "c" / "broker.yaml", broker).parent
    functions = str(tmp_path / "none")
    result = cemesh("up", "--config", str(config), "--functions", functions, "--state", state)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert message in result.stderr
