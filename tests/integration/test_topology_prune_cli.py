"""`cemesh topology prune` against the real RabbitMQ: it lists, and deletes only with --yes."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from brokers.rabbitmq.broker import RabbitBroker
from brokers.triggers import load_config
from tests.contract.conftest import amqp_url, unique_prefix
from tests.e2e.harness import cemesh, write

pytestmark = pytest.mark.connected

TRIGGER = """
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: {name}}}
spec: {{broker: default, subscriber: {{uri: "http://127.0.0.1:9/"}}}}
"""


def _prune(config: Path, prefix: str, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CEMESH_BROKER_PREFIX": prefix}
    functions = str(config / "none")
    args = ["--config", str(config), "--functions", functions, "--broker", amqp_url(), *extra]
    return cemesh("topology", "prune", *args, env=env, timeout=60)


async def test_prune_lists_then_deletes_a_removed_triggers_queues(tmp_path: Path) -> None:
    prefix = unique_prefix()
    old = write(
        tmp_path / "old" / "t.yaml",
        TRIGGER.format(name="keep") + "---" + TRIGGER.format(name="gone"),
    ).parent
    new = write(tmp_path / "new" / "t.yaml", TRIGGER.format(name="keep")).parent
    broker = RabbitBroker(amqp_url(), prefix=prefix)
    await broker.open(load_config(old))
    await broker.close()
    try:
        listed = _prune(new, prefix)
        assert listed.returncode == 0, listed.stderr
        assert f"unused: {prefix}.default.gone" in listed.stdout
        assert "keep" not in listed.stdout
        assert "--yes" in listed.stdout
        deleted = _prune(new, prefix, "--yes")
        assert deleted.returncode == 0, deleted.stderr
        assert "deleted" in deleted.stdout
        assert _prune(new, prefix).stdout.strip() == "nothing to prune"
    finally:
        cleanup = RabbitBroker(amqp_url(), prefix=prefix)
        await cleanup.open(load_config(old))
        await cleanup.delete_everything()
        await cleanup.close()


def test_prune_needs_rabbitmq() -> None:
    result = cemesh("topology", "prune", "--broker", "memory://")
    assert result.returncode == 2
    assert "RabbitMQ" in result.stderr
