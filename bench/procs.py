"""The processes a RabbitMQ benchmark runs beside itself: `cemesh up`, the sink, the load generator.

Each is a child process of the benchmark (loopback only), stopped by its own id when the
benchmark ends, and every RabbitMQ object is created under a unique prefix and deleted at the end
(`cleanup`), so a benchmark can run while tests use the same RabbitMQ.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from bench.workload import AMQP_URL, free_port
from tests.builders import broker_yaml, documents, trigger_yaml, write
from tests.e2e.harness import MeshProcess

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a live process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _busy_seconds() -> float:
    """CPU time the whole machine spent busy so far (all cores, /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _rabbitmq_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == "beam.smp":
                    pids.append(int(entry.name))
    return pids


class OtherLoad:
    """How busy the machine was with work that is not the benchmark's while it ran, which is
    what makes figures from a shared machine differ from one run to the next.

    Everything busy minus this process, its children (once reaped: call `percent` after
    stopping them) and RabbitMQ (which also works for anyone else using it, so this
    undercounts), in % of one core.
    """

    def __init__(self) -> None:
        self._start = time.monotonic()
        self._busy = _busy_seconds()
        self._ours = self._our_seconds()

    @staticmethod
    def _our_seconds() -> float:
        times = os.times()
        ours = times.user + times.system + times.children_user + times.children_system
        for pid in _rabbitmq_pids():
            with contextlib.suppress(OSError):
                ours += cpu_seconds(pid)
        return ours

    def percent(self) -> float:
        others = (_busy_seconds() - self._busy) - (self._our_seconds() - self._ours)
        return max(0.0, others) / (time.monotonic() - self._start) * 100


def stop_process(proc: subprocess.Popen[str], timeout: float = 15.0) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out or ""


class Sink:
    """`python -m bench.sink` on a free port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> Sink:
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "bench.sink", str(self.port)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"sink did not start: {line}{stop_process(self.proc)}")
        return self

    def stats(self, since: int = 0, until: int = 2**63) -> dict[str, Any]:
        url = f"{self.url}/_stats?since={since}&until={until}"
        with urllib.request.urlopen(url, timeout=10) as response:
            result: dict[str, Any] = json.loads(response.read())
            return result

    def count(self) -> int:
        return int(self.stats()["count"])

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.url}/_reset", data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def wait_for(self, count: int, timeout: float) -> int:
        """Wait until the sink received `count` requests (or the timeout); returns the count."""
        deadline = time.monotonic() + timeout
        got = self.count()
        while got < count and time.monotonic() < deadline:
            time.sleep(0.1)
            got = self.count()
        return got

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None


def mesh_config(directory: Path, sink: str | None) -> Path:
    """A config directory: broker default/default and, with a sink, one trigger to it."""
    parts = [broker_yaml()]
    if sink is not None:
        created = [{"exact": {"type": "com.example.order.created"}}]
        parts.append(trigger_yaml("bench", f"{sink}/orders", filters=created))
    write(directory / "mesh.yaml", documents(*parts))
    (directory / "functions").mkdir(exist_ok=True)
    return directory


class Mesh(MeshProcess):
    """`cemesh up --broker amqp://...` with a unique `CEMESH_BROKER_PREFIX`, on a config of
    its own (`mesh_config`) in a temporary directory."""

    def __init__(self, prefix: str, sink: str | None, env: dict[str, str] | None = None) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="cemesh-bench-")
        config = mesh_config(Path(self._dir.name), sink)
        env = {"CEMESH_BROKER_PREFIX": prefix, **(env or {})}
        super().__init__(config, config / "functions", extra=["--broker", AMQP_URL], env=env)
        self.prefix = prefix
        self.sink = sink

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 30.0) -> Mesh:
        super().start(timeout)
        return self

    def stop(self) -> str:
        output = super().stop()
        self._dir.cleanup()
        return output


def loadgen(url: str, *options: str, timeout: float = 120.0) -> dict[str, Any]:
    """Run `python -m bench.loadgen URL OPTIONS...` and return its JSON result."""
    done = subprocess.run(
        [PYTHON, "-m", "bench.loadgen", url, *options],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"loadgen failed ({done.returncode}): {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


async def cleanup(prefix: str, queues: Sequence[str] = (), exchanges: Sequence[str] = ()) -> None:
    """Delete everything cemesh declared under `prefix`, and the benchmark's own objects."""
    import aio_pika

    from brokers.rabbitmq.broker import RabbitBroker

    try:
        await RabbitBroker(AMQP_URL, prefix=prefix).delete_everything()
    except Exception as exc:  # report, and still delete the benchmark's own objects
        print(f"bench: cleanup of {prefix} failed: {exc!r}", file=sys.stderr)
    if queues or exchanges:
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            channel = await connection.channel()
            for name in queues:
                await channel.queue_delete(name)
            for name in exchanges:
                await channel.exchange_delete(name)


@contextlib.contextmanager
def running(*procs: Sink | Mesh) -> Iterator[None]:
    """Stop the given processes whatever happens inside."""
    try:
        yield
    finally:
        for proc in reversed(procs):
            proc.stop()
