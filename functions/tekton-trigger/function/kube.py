"""The Kubernetes side: which cluster (if any), creating runs, and what its errors mean.

Which cluster, decided once at start from the environment the runtime gives the function:

- `TEKTON_TRIGGER_DRY_RUN=true`: dry run, no cluster is contacted.
- `TEKTON_TRIGGER_DRY_RUN=false`: a cluster is required (in-cluster, else `KUBECONFIG`); start
  fails without one.
- unset or `auto`: in-cluster config when running in a pod; else `KUBECONFIG` when set, except
  under `cemesh up` (`CEMESH_FUNCTION` is set), where a developer's exported KUBECONFIG must
  not start real pipelines by accident; else dry run.

`~/.kube/config` is never read implicitly. The client gets its own `Configuration` (the
module-level default is left alone) and urllib3 retries are off: the broker owns retries.

Errors of the create call become `TriggerError`s (see errors.py): 201 is done; 409
AlreadyExists means this event's run exists (read it back, reply as before) unless the run
there belongs to another event (`Rejected`, reason NameConflict); 408, 429, 5xx and transport
failures are `Unavailable` (503, retried); any other 4xx is `Rejected` (422, dead-lettered)
with the API's own Status message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from .errors import Rejected, Unavailable
from .pipelinerun import EVENT_ID, EVENT_SOURCE, GROUP, PLURAL, VERSION

SERVICE_ACCOUNT_DIR: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount")
RETRIED_STATUSES: Final = frozenset({408, 429})


@dataclass(slots=True)
class Cluster:
    """A connection to one cluster's Tekton API."""

    api: Any
    host: str
    namespace: str
    how: str
    timeout: float = 10.0

    def close(self) -> None:
        self.api.api_client.close()

    def create(self, namespace: str, body: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create the run; (the stored run, True) or, on redelivery, (the existing run, False).

        Blocking (the client is synchronous): call it in a thread.
        """
        name = str(body["metadata"]["name"])
        try:
            created = self.api.create_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                body,
                field_validation="Strict",
                _request_timeout=self.timeout,
            )
            return dict(created), True
        except ApiException as exc:
            status = _status_of(exc)
            if exc.status != 409 or status.get("reason") != "AlreadyExists":
                raise _translate(exc, status, f"create PipelineRun {namespace}/{name}") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise _unreachable(exc, self.host) from None
        existing = self.get(namespace, name)
        annotations = existing.get("metadata", {}).get("annotations") or {}
        ours = body["metadata"]["annotations"]
        if (annotations.get(EVENT_ID), annotations.get(EVENT_SOURCE)) != (
            ours[EVENT_ID],
            ours[EVENT_SOURCE],
        ):
            raise Rejected(
                f"PipelineRun {namespace}/{name} exists but was not started by event "
                f"{ours[EVENT_ID]} from {ours[EVENT_SOURCE]}",
                "NameConflict",
            )
        return existing, False

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        try:
            found = self.api.get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, _request_timeout=self.timeout
            )
            return dict(found)
        except ApiException as exc:
            raise _translate(exc, _status_of(exc), f"get PipelineRun {namespace}/{name}") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise _unreachable(exc, self.host) from None


def _status_of(exc: ApiException) -> dict[str, Any]:
    try:
        body = json.loads(exc.body or "")
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) and body.get("kind") == "Status" else {}


def _translate(exc: ApiException, status: Mapping[str, Any], what: str) -> Exception:
    code = int(exc.status or 0)
    reason = str(status.get("reason") or exc.reason or "Unknown")
    message = str(status.get("message") or exc.reason or "no message")
    text = f"Kubernetes API refused to {what}: {code} {reason}: {message}"
    if code == 0 or code >= 500 or code in RETRIED_STATUSES or reason == "Conflict":
        return Unavailable(text, reason if code else "Unreachable")
    return Rejected(text, reason)


def _unreachable(exc: BaseException, host: str) -> Unavailable:
    return Unavailable(f"Kubernetes API at {host} unreachable: {exc}", "Unreachable")


def connect(env: Mapping[str, str]) -> Cluster | None:
    """The cluster this environment configures, or None for a dry run (see the table above)."""
    mode = env.get("TEKTON_TRIGGER_DRY_RUN", "auto").strip().lower()
    if mode in ("true", "1", "yes"):
        return None
    if mode not in ("false", "0", "no", "auto", ""):
        raise ValueError(f"TEKTON_TRIGGER_DRY_RUN must be true, false or auto, not {mode!r}")
    required = mode in ("false", "0", "no")
    configuration = client.Configuration()
    namespace: str | None = None
    if env.get("KUBERNETES_SERVICE_HOST") and (SERVICE_ACCOUNT_DIR / "token").exists():
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        how = "in-cluster service account"
        namespace = _read(SERVICE_ACCOUNT_DIR / "namespace")
    elif env.get("KUBECONFIG") and (required or not env.get("CEMESH_FUNCTION")):
        path = env["KUBECONFIG"]
        try:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=path, client_configuration=configuration, persist_config=False
            )
            _, active = config.list_kube_config_contexts(config_file=path)  # type: ignore[no-untyped-call]
        except (ConfigException, OSError) as exc:
            raise ValueError(f"KUBECONFIG {path}: {exc}") from None
        how = f"kubeconfig {path}, context {active.get('name')}"
        namespace = (active.get("context") or {}).get("namespace")
    elif required:
        raise ValueError(
            "TEKTON_TRIGGER_DRY_RUN=false but no cluster is configured "
            "(not in a pod, KUBECONFIG unset)"
        )
    else:
        return None
    configuration.retries = False
    api = client.CustomObjectsApi(client.ApiClient(configuration))
    timeout = float(env.get("TEKTON_TRIGGER_API_TIMEOUT") or 10)
    chosen = env.get("TEKTON_TRIGGER_NAMESPACE") or namespace or "default"
    return Cluster(api, str(configuration.host), chosen, how, timeout)


def _read(path: Path) -> str | None:
    try:
        return path.read_text("utf-8").strip() or None
    except OSError:
        return None


def default_namespace(env: Mapping[str, str]) -> str:
    """Where runs go in a dry run: `TEKTON_TRIGGER_NAMESPACE`, else `default`."""
    return env.get("TEKTON_TRIGGER_NAMESPACE") or "default"
