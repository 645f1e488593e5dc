"""tekton-trigger: CloudEvents in, Tekton PipelineRuns out (a Knative function, `invoke:
cloudevent`).

For each event: find the binding for its type, render the PipelineRun (bindings.py, paths.py,
pipelinerun.py), create it through the Kubernetes API (kube.py) or, in dry run, only build it,
and reply with a CDEvent `pipelinerun.queued` linked to the event (reply.py). Errors answer with
the status that makes the broker retry (503) or dead-letter (400, 422) (errors.py).

Environment (Knative gives it to `start`; `cemesh up` too):

- `TEKTON_TRIGGER_BINDINGS`: the bindings file. Default: `/etc/tekton-trigger/bindings.yaml`
  when mounted (ConfigMap `tekton-trigger-bindings`, see func.yaml), else the `bindings.yaml`
  shipped next to this module.
- `TEKTON_TRIGGER_DRY_RUN`: `true`, `false` or `auto` (default); see kube.py.
- `TEKTON_TRIGGER_NAMESPACE`: namespace of runs whose binding names none. Default: the pod's
  namespace, the kubeconfig context's, else `default`.
- `TEKTON_TRIGGER_SOURCE`: source of the replies; default `/functions/tekton-trigger`.
- `TEKTON_TRIGGER_API_TIMEOUT`: seconds per Kubernetes API call; default 10.
- `TEKTON_DASHBOARD_URL`: when set, the reply's `subject.content.uri` links the run there
  (else the run's API URL; none in dry run).
- `KUBECONFIG`: kubeconfig path(s), used outside a pod.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from .bindings import Bindings, load_bindings
from .errors import BadEvent, TriggerError
from .kube import Cluster, connect, default_namespace
from .paths import EventView
from .pipelinerun import Cause, build, run_name
from .reply import as_cloudevent, error_event, now, queued_cdevent, queued_id

log = logging.getLogger(__name__)
SHIPPED_BINDINGS: Final = Path(__file__).with_name("bindings.yaml")
MOUNTED_BINDINGS: Final = Path("/etc/tekton-trigger/bindings.yaml")
DEFAULT_SOURCE: Final = "/functions/tekton-trigger"


def new() -> Function:
    """Called once by the func-python runtime to create the function instance."""
    return Function()


def bindings_path(env: Mapping[str, str]) -> Path:
    explicit = env.get("TEKTON_TRIGGER_BINDINGS")
    if explicit:
        return Path(explicit)
    return MOUNTED_BINDINGS if MOUNTED_BINDINGS.exists() else SHIPPED_BINDINGS


class Function:
    def __init__(self) -> None:
        self.bindings: Bindings | None = None
        self.cluster: Cluster | None = None
        self.namespace = "default"
        self.source = DEFAULT_SOURCE
        self.dashboard: str | None = None
        self.counts = {"created": 0, "existing": 0, "dry-run": 0, "failed": 0}

    def start(self, cfg: Mapping[str, str]) -> None:
        """Load the bindings and connect; a bad bindings file or cluster config stops startup."""
        self.bindings = load_bindings(bindings_path(cfg))
        self.cluster = connect(cfg)
        self.namespace = self.cluster.namespace if self.cluster else default_namespace(cfg)
        self.source = cfg.get("TEKTON_TRIGGER_SOURCE") or DEFAULT_SOURCE
        self.dashboard = (cfg.get("TEKTON_DASHBOARD_URL") or "").rstrip("/") or None
        where = self.cluster.how if self.cluster else "dry run (no cluster)"
        log.info(
            "tekton-trigger: %d binding(s) from %s; %s; namespace %s",
            len(self.bindings.bindings),
            self.bindings.origin,
            where,
            self.namespace,
        )

    def stop(self) -> None:
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None
        log.info("tekton-trigger stopping: %s", self.counts)

    def alive(self) -> tuple[bool, str]:
        return True, "alive"

    def ready(self) -> tuple[bool, str]:
        if self.bindings is None:
            return False, "not started"
        return True, "ready" if self.cluster else "ready (dry run)"

    async def handle(self, scope: Mapping[str, Any], receive: Any, send: Any) -> None:
        event = scope["event"]
        try:
            reply = await self.trigger(EventView.of(event))
        except TriggerError as exc:
            self.counts["failed"] += 1
            log.warning(
                "event %s (%s from %s): %s %s",
                event.get_id(),
                event.get_type(),
                event.get_source(),
                exc.status,
                exc.message,
            )
            await send(error_event(exc, self.source, event.get_id()), exc.status)
            return
        await send(reply)

    async def trigger(self, event: EventView) -> Any:
        """The queued reply for one event; TriggerError when there is none to give."""
        if self.bindings is None:
            raise RuntimeError("the function was not started")
        for required in ("id", "source", "type"):
            if not event.attributes.get(required):
                raise BadEvent(f"the event has no {required}", "MissingAttribute")
        binding = self.bindings.for_type(str(event.attributes["type"]))
        cause = Cause.of(event)
        namespace = binding.namespace or self.namespace
        name = run_name(binding.name_prefix, cause.source, cause.id)
        body = build(binding, event, cause, namespace, name, queued_id(namespace, name))
        if self.cluster is None:
            self.counts["dry-run"] += 1
            timestamp = now()
            custom: dict[str, Any] = {"dryRun": True, "pipelineRun": body}
        else:
            run, created = await asyncio.to_thread(self.cluster.create, namespace, body)
            self.counts["created" if created else "existing"] += 1
            meta = run.get("metadata") or {}
            timestamp = str(meta.get("creationTimestamp") or now())
            custom = {
                "dryRun": False,
                "pipelineRun": {"namespace": namespace, "name": name, "uid": meta.get("uid")},
            }
            log.info(
                "event %s: PipelineRun %s/%s %s",
                cause.id,
                namespace,
                name,
                "created" if created else "already existed",
            )
        cdevent = queued_cdevent(
            namespace=namespace,
            name=name,
            pipeline_name=binding.pipeline_name,
            cause=cause,
            source=self.source,
            timestamp=timestamp,
            uri=self._uri(namespace, name),
            custom=custom,
        )
        return as_cloudevent(cdevent)

    def _uri(self, namespace: str, name: str) -> str | None:
        if self.dashboard:
            return f"{self.dashboard}/#/namespaces/{namespace}/pipelineruns/{name}"
        if self.cluster is not None:
            host = self.cluster.host.rstrip("/")
            return f"{host}/apis/tekton.dev/v1/namespaces/{namespace}/pipelineruns/{name}"
        return None
