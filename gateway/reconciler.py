"""The reconciler: brings the running mesh to a desired configuration, without a restart.

Start-up is a reconcile from nothing, and a reload (a file under `--config` or a `func.yaml`
changed, or SIGHUP) is a reconcile from the running configuration, so the two cannot drift; the
broker-class work feeds the same `apply` from the Kubernetes API instead of files.

Order, so that nothing accepted is lost: the broker's topology first (new exchanges, queues
and bindings declared, stale bindings removed, a removed trigger's queue unbound and kept), then
the ledger's policies, then the ingress sees the new brokers, then the dispatcher starts
consuming new triggers and retires removed ones after delivering what their queues hold.

A configuration that does not load is refused whole, with one line naming the file and the
object; the previous one keeps serving. Functions hosted in-process are not restarted: a
function whose project changed (beyond its subscriptions) is named in one line saying that it
needs a restart, and a new function's subscriptions wait for that restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from brokers.errors import BrokerError, ConfigError
from brokers.triggers import BrokerSpec, MeshConfig, TriggerSpec
from gateway.loading import LoadedConfig, load_running

if TYPE_CHECKING:
    from gateway.mesh import Mesh

log = logging.getLogger(__name__)
APPLIED: Final = "applied"
REFUSED: Final = "refused"


@dataclass(frozen=True, slots=True)
class Change:
    """One object added (`+`), changed (`~`, with what changed) or removed (`-`)."""

    sign: str
    kind: str
    key: str
    what: str = ""

    def __str__(self) -> str:
        return f"{self.sign}{self.kind} {self.key}" + (f" {self.what}" if self.what else "")


def diff(old: MeshConfig, new: MeshConfig) -> list[Change]:
    """What turns `old` into `new`: brokers first, then triggers, each sorted by key."""
    changes = _diff("broker", old.brokers, new.brokers, _broker_aspects)
    old_triggers = {t.key: t for t in old.triggers}
    new_triggers = {t.key: t for t in new.triggers}
    return changes + _diff("trigger", old_triggers, new_triggers, _trigger_aspects)


def _diff(kind: str, old: Any, new: Any, aspects: Any) -> list[Change]:
    changes = [Change("-", kind, key) for key in sorted(old.keys() - new.keys())]
    for key in sorted(new.keys()):
        if key not in old:
            changes.append(Change("+", kind, key))
        else:
            what = aspects(old[key], new[key])
            if what:
                changes.append(Change("~", kind, key, ",".join(what)))
    return sorted(changes, key=lambda c: (c.key, c.sign))


def _broker_aspects(old: BrokerSpec, new: BrokerSpec) -> list[str]:
    aspects = [("delivery", old.delivery != new.delivery)]
    aspects.append(("annotations", dict(old.annotations) != dict(new.annotations)))
    return [name for name, changed in aspects if changed]


def _trigger_aspects(old: TriggerSpec, new: TriggerSpec) -> list[str]:
    def filters(spec: TriggerSpec) -> tuple[Any, ...]:
        raw = spec.raw_spec
        return (spec.filter.description, raw.get("filter"), raw.get("filters"))

    aspects = [
        ("broker", old.broker != new.broker),
        ("filter", filters(old) != filters(new)),
        ("subscriber", old.subscriber != new.subscriber),
        ("delivery", old.delivery != new.delivery),
        ("parallelism", old.parallelism != new.parallelism),
        ("annotations", dict(old.annotations) != dict(new.annotations)),
    ]
    return [name for name, changed in aspects if changed]


class Reconciler:
    """Applies desired configurations to one mesh, one at a time."""

    def __init__(self, mesh: Mesh) -> None:
        self.mesh = mesh
        self.counts = {APPLIED: 0, REFUSED: 0}
        self.observers: list[Callable[[LoadedConfig], None]] = []  # told after each apply
        self._lock = asyncio.Lock()

    async def reload(self, reason: str = "") -> list[Change] | None:
        """Load the configuration from its files and apply it; None when it was refused."""
        async with self._lock:
            settings = self.mesh.settings
            running = self.mesh.loaded.functions
            try:
                loaded, notes = await asyncio.to_thread(load_running, settings, running)
            except ConfigError as exc:
                self.counts[REFUSED] += 1
                log.error("configuration refused, the previous one keeps serving: %s", exc)
                return None
            for note in notes:
                log.warning("%s: restart cemesh up to apply it", note)
            try:
                changes = await self._apply(loaded)
            except BrokerError as exc:
                self.counts[REFUSED] += 1
                log.error("configuration not applied (%s), the previous one keeps serving", exc)
                return None
            if changes or notes:
                self.counts[APPLIED] += 1
            elif reason:
                log.info("configuration unchanged (%s)", reason)
            return changes

    async def apply(self, loaded: LoadedConfig) -> list[Change]:
        """Apply an already loaded configuration (the Kubernetes API feeds this one)."""
        async with self._lock:
            changes = await self._apply(loaded)
            if changes:
                self.counts[APPLIED] += 1
            return changes

    async def _apply(self, loaded: LoadedConfig) -> list[Change]:
        mesh = self.mesh
        changes = diff(mesh.config, loaded.config)
        if not changes:
            mesh.loaded = loaded
            return []
        await mesh.broker.reconcile(loaded.config)
        mesh.ledger.use(loaded.config)
        mesh.loaded = loaded
        await mesh.dispatcher.reconcile(loaded.config)
        for observer in self.observers:
            observer(loaded)
        for change in changes:
            log.info("%s", change)
        return changes
