"""A fake Kubernetes API server on 127.0.0.1, spoken to over real HTTP by the real client.

No kube-apiserver can run on these machines (DESIGN section 7), and mocking the `kubernetes`
client would test our guesses about it rather than the client. So this serves the part of the
API that code under test uses, following the API conventions the client and its callers rely
on:

- `POST` create: 201 with `metadata.uid`, `resourceVersion`, `creationTimestamp`,
  `generation`; `generateName` gets 5 random characters; `?dryRun=All` validates only.
  409 `AlreadyExists`, 404 `NotFound` for an unknown namespace (when namespaces are declared),
  400 `BadRequest` for a body whose apiVersion, kind or namespace contradicts the URL.
- Validation: `metadata` as the apiserver checks it, and the CRD's `openAPIV3Schema` from
  `../shared/crds` (`tests.crds`); a failure is 422 `Invalid` with one `details.causes` entry per
  problem. Unknown fields: `?fieldValidation=Strict` gives 400 like the apiserver; otherwise the
  default mode `unknown_fields="reject"` answers 422, which is stricter than a real cluster
  (that prunes them silently, which is why tests should hear about them), and `"prune"`
  behaves like a real cluster: drops them and sends a `Warning` header.
- `GET` get and list (`labelSelector` with `=`, `==`, `!=`, `key`, `!key`), `PUT` replace with
  optimistic concurrency (409 `Conflict` on a stale `resourceVersion`), `PATCH` merge-patch,
  `DELETE`; the `/status` subresource; one resourceVersion counter for every write.
- Discovery (`/version`, `/api`, `/api/v1`, `/apis`, `/apis/<group>/<version>`) so that
  `kubernetes.dynamic.DynamicClient` works too.
- Faults: `fail(503)` (or 403, 429, 500...) answers the next matching requests with a proper
  Status object. A bearer token is required when configured (401 otherwise).

Not served: watch, JSON patch, strategic merge patch (415, as for custom resources), field
selectors, CEL rules, defaulting, finalizers. Thread-safe; the client is synchronous, so the
server runs in a thread of its own and works under any event loop.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import random
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import parse_qs, urlsplit

import yaml

from tests import crds

Json = dict[str, Any]
NAME_ALPHABET: Final = "bcdfghjklmnpqrstvwxz2456789"
"""The characters the apiserver appends to generateName (no vowels, no lookalikes)."""
VERBS: Final = {
    "POST": "create",
    "GET": "get",
    "PUT": "update",
    "PATCH": "patch",
    "DELETE": "delete",
}
REASONS: Final = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


@dataclass(frozen=True, slots=True)
class Resource:
    """One resource type the server serves: where it lives in the API and how to check it."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    singular: str = ""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """`pipelineruns.tekton.dev`, `configmaps`: how the apiserver names it in messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @classmethod
    def from_crd(cls, crd: crds.CRD, version: str | None = None) -> Resource:
        return cls(
            crd.group,
            version or crd.storage_version,
            crd.plural,
            crd.kind,
            crd.namespaced,
            crd.singular,
        )

    @classmethod
    def builtin(cls, api_version: str, kind: str, plural: str) -> Resource:
        """A built-in kind (ConfigMap, Secret...), checked with the client's models."""
        found = crds.builtin_kind(api_version, kind)
        if found is None:
            raise ValueError(f"{api_version} {kind} is not a built-in kind")
        group, version = crds.split_api_version(api_version)
        return cls(group, version, plural, kind, found[1], kind.lower())


def tekton_resources() -> list[Resource]:
    """Pipeline, Task, PipelineRun and TaskRun (`tekton.dev/v1`) from the shared CRDs."""
    found = crds.load_crds(crds.require_shared())
    return [
        Resource.from_crd(found[("tekton.dev", kind)], "v1")
        for kind in ("Pipeline", "PipelineRun", "Task", "TaskRun")
    ]


@dataclass(frozen=True, slots=True)
class Recorded:
    """A request as the server saw it, and the status it answered."""

    method: str
    path: str
    query: Mapping[str, str]
    body: Any
    status: int
    headers: Mapping[str, str]


@dataclass(slots=True)
class _Fault:
    status: int
    times: int
    methods: frozenset[str]
    plural: str | None
    message: str | None
    retry_after: int | None


@dataclass(slots=True)
class _Answer:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class ApiError(Exception):
    """Ends a request with a Status object (the apiserver's error shape)."""

    def __init__(
        self, code: int, message: str, details: Json | None = None, *, reason: str | None = None
    ) -> None:
        super().__init__(message)
        self.code, self.message, self.details = code, message, details
        self.reason = reason or REASONS.get(code, "Unknown")


def status_object(
    code: int, message: str, details: Json | None = None, *, reason: str | None = None
) -> Json:
    """The apiserver's error body (`kind: Status`)."""
    body: Json = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason or REASONS.get(code, "Unknown"),
        "code": code,
    }
    if details is not None:
        body["details"] = details
    return body


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


def _selector(text: str) -> list[tuple[str, str, str | None]]:
    """`a=b,c!=d,e,!f` -> [(op, key, value)]; set-based selectors are not served."""
    terms: list[tuple[str, str, str | None]] = []
    for raw in filter(None, (t.strip() for t in text.split(","))):
        if " in " in raw or " notin " in raw or "(" in raw:
            raise ApiError(400, f"fakekube serves only equality selectors, not {raw!r}")
        if "!=" in raw:
            key, value = raw.split("!=", 1)
            terms.append(("!=", key.strip(), value.strip()))
        elif "=" in raw:
            key, value = raw.replace("==", "=").split("=", 1)
            terms.append(("=", key.strip(), value.strip()))
        elif raw.startswith("!"):
            terms.append(("!", raw[1:].strip(), None))
        else:
            terms.append(("exists", raw, None))
    return terms


def _matches(labels: Mapping[str, str], terms: list[tuple[str, str, str | None]]) -> bool:
    for op, key, value in terms:
        ok = {
            "=": labels.get(key) == value,
            "!=": labels.get(key) != value,
            "!": key not in labels,
            "exists": key in labels,
        }[op]
        if not ok:
            return False
    return True


class FakeKube:
    """The server. Use as a context manager, or `start()` / `stop()`."""

    def __init__(
        self,
        resources: Iterable[Resource] | None = None,
        *,
        namespaces: Iterable[str] | None = None,
        unknown_fields: Literal["reject", "prune"] = "reject",
        token: str | None = "fakekube-token",
        user: str = "system:serviceaccount:default:default",
    ) -> None:
        self.resources = list(tekton_resources() if resources is None else resources)
        self.namespaces = None if namespaces is None else set(namespaces)
        self.unknown_fields = unknown_fields
        self.token = token
        self.user = user
        self.requests: list[Recorded] = []
        self._store: dict[tuple[str, str, str, str], Json] = {}
        self._faults: list[_Fault] = []
        self._revision = 0
        self._lock = threading.RLock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the fake API server is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeKube:
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fakekube", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeKube:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def write_kubeconfig(self, path: Path, *, namespace: str = "default") -> Path:
        """A kubeconfig whose current context talks to this server."""
        user: Json = {"token": self.token} if self.token else {}
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fakekube", "cluster": {"server": self.url}}],
            "users": [{"name": "fakekube", "user": user}],
            "contexts": [
                {
                    "name": "fakekube",
                    "context": {"cluster": "fakekube", "user": "fakekube", "namespace": namespace},
                }
            ],
            "current-context": "fakekube",
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config), "utf-8")
        return path

    # ------------------------------------------------------------ test controls

    def fail(
        self,
        status: int,
        *,
        times: int = 1,
        methods: Iterable[str] = ("POST",),
        plural: str | None = None,
        message: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        """Answer the next `times` matching resource requests with `status` (a Status body)."""
        with self._lock:
            self._faults.append(
                _Fault(status, times, frozenset(methods), plural, message, retry_after)
            )

    def objects(self, plural: str, namespace: str | None = None) -> list[Json]:
        """Stored objects of a resource (copies), sorted by namespace and name."""
        with self._lock:
            return [
                copy.deepcopy(obj)
                for (_, p, ns, _), obj in sorted(self._store.items())
                if p == plural and (namespace is None or ns == namespace)
            ]

    def get(self, plural: str, namespace: str, name: str) -> Json | None:
        with self._lock:
            resource = self._resource_named(plural)
            obj = self._store.get(self._key(resource, namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def add(self, obj: Mapping[str, Any]) -> Json:
        """Store an object as a create would (validated); raise ApiError if refused."""
        api_version, kind = str(obj.get("apiVersion")), str(obj.get("kind"))
        resource = next(
            (r for r in self.resources if r.api_version == api_version and r.kind == kind), None
        )
        if resource is None:
            raise ApiError(404, f"{api_version} {kind} is not served")
        namespace = str((obj.get("metadata") or {}).get("namespace") or "default")
        answer = self._create(resource, namespace if resource.namespaced else "", dict(obj), {})
        result: Json = answer.body
        return result

    def set_status(self, plural: str, namespace: str, name: str, status: Json) -> Json:
        """Replace an object's status, as its controller would (bumps resourceVersion)."""
        with self._lock:
            resource = self._resource_named(plural)
            key = self._key(resource, namespace, name)
            if key not in self._store:
                raise ApiError(404, self._not_found(resource, name))
            self._store[key]["status"] = copy.deepcopy(status)
            self._store[key]["metadata"]["resourceVersion"] = self._bump()
            return copy.deepcopy(self._store[key])

    # ------------------------------------------------------------ request handling

    def handle(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        raw: bytes,
    ) -> _Answer:
        body: Any = None
        try:
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError as exc:
                    raise ApiError(
                        400, f"the body of the request is not valid JSON: {exc}"
                    ) from None
            answer = self._answer(method, path, query, headers, body)
        except ApiError as exc:
            body = status_object(exc.code, exc.message, exc.details, reason=exc.reason)
            answer = _Answer(exc.code, body)
        lowered = {k.lower(): v for k, v in headers.items()}
        kept: dict[str, str] = {
            k: lowered[k] for k in ("content-type", "authorization", "user-agent") if k in lowered
        }
        with self._lock:
            self.requests.append(Recorded(method, path, dict(query), body, answer.status, kept))
        return answer

    def _answer(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        body: Any,
    ) -> _Answer:
        lowered = {k.lower(): v for k, v in headers.items()}
        if self.token and lowered.get("authorization") != f"Bearer {self.token}":
            raise ApiError(401, "Unauthorized")
        parts = [p for p in path.split("/") if p]
        discovery = self._discovery(parts)
        if discovery is not None:
            if method != "GET":
                raise ApiError(405, f"{method} is not allowed on {path}")
            return _Answer(200, discovery)
        resource, namespace, name, sub = self._route(parts)
        self._inject_fault(method, resource, namespace)
        if query.get("watch") in ("1", "true"):
            raise ApiError(400, "fakekube does not serve watch")
        with self._lock:
            if method == "GET" and name is None:
                return self._list(resource, namespace, query)
            if method == "POST" and name is None and sub is None:
                if resource.namespaced and namespace is None:
                    raise ApiError(
                        405, f"create {resource.qualified} needs a namespace in the path"
                    )
                return self._create(resource, namespace or "", body, query)
            if name is None:
                raise ApiError(405, f"{method} is not allowed on a collection")
            if sub not in (None, "status"):
                raise ApiError(404, "the server could not find the requested resource")
            ns = namespace or ""
            if method == "GET":
                return _Answer(200, copy.deepcopy(self._existing(resource, ns, name)))
            if method == "DELETE":
                gone = self._store.pop(self._key(resource, ns, name), None)
                if gone is None:
                    raise ApiError(
                        404, self._not_found(resource, name), self._details(resource, name)
                    )
                gone["metadata"]["resourceVersion"] = self._bump()
                return _Answer(200, gone)
            if method == "PUT":
                return self._replace(resource, ns, name, body, query, sub)
            if method == "PATCH":
                content_type = lowered.get("content-type", "").split(";")[0].strip()
                if content_type != "application/merge-patch+json":
                    raise ApiError(
                        415,
                        "the body of the request was in an unknown format - accepted media "
                        f"types include: application/merge-patch+json (got {content_type})",
                    )
                current = self._existing(resource, ns, name)
                merged = _merge_patch(current, body)
                if sub == "status":
                    merged = {**current, "status": merged.get("status")}
                return self._replace(resource, ns, name, merged, query, None)
            raise ApiError(405, f"{method} is not allowed")

    def _discovery(self, parts: list[str]) -> Json | None:
        if parts == ["version"]:
            return {
                "major": "1",
                "minor": "34",
                "gitVersion": "v1.34.0-fakekube",
                "platform": "linux/amd64",
            }
        if parts == ["api"]:
            address = self.url.removeprefix("http://")
            return {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": address}
                ],
            }
        if parts == ["apis"]:
            groups: dict[str, list[str]] = {}
            for r in self.resources:
                if r.group and r.version not in groups.setdefault(r.group, []):
                    groups[r.group].append(r.version)
            return {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [
                    {
                        "name": g,
                        "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in versions],
                        "preferredVersion": {
                            "groupVersion": f"{g}/{versions[0]}",
                            "version": versions[0],
                        },
                    }
                    for g, versions in groups.items()
                ],
            }
        if parts == ["api", "v1"] or (len(parts) == 3 and parts[0] == "apis"):
            group, version = ("", "v1") if parts[0] == "api" else (parts[1], parts[2])
            served = [r for r in self.resources if (r.group, r.version) == (group, version)]
            if not served and group:
                raise ApiError(404, "the server could not find the requested resource")
            verbs = ["create", "delete", "get", "list", "patch", "update"]
            resources: list[Json] = []
            for r in served:
                common = {"singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind}
                resources.append({"name": r.plural, **common, "verbs": verbs})
                resources.append(
                    {
                        "name": f"{r.plural}/status",
                        **common,
                        "singularName": "",
                        "verbs": ["get", "patch", "update"],
                    }
                )
            return {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": f"{group}/{version}" if group else version,
                "resources": resources,
            }
        return None

    def _route(self, parts: list[str]) -> tuple[Resource, str | None, str | None, str | None]:
        if len(parts) >= 3 and parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        elif len(parts) >= 4 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(404, "the server could not find the requested resource")
        namespace = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        resource = next(
            (
                r
                for r in self.resources
                if (r.group, r.version, r.plural) == (group, version, rest[0])
            ),
            None,
        )
        if resource is None or len(rest) > 3 or (namespace is not None and not resource.namespaced):
            raise ApiError(404, "the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        return resource, namespace, name, sub

    def _inject_fault(self, method: str, resource: Resource, namespace: str | None) -> None:
        with self._lock:
            fault = next(
                (
                    f
                    for f in self._faults
                    if method in f.methods and f.plural in (None, resource.plural) and f.times > 0
                ),
                None,
            )
            if fault is None:
                return
            fault.times -= 1
        verb = VERBS.get(method, method.lower())
        where = f' in the namespace "{namespace}"' if namespace else ""
        messages = {
            401: "Unauthorized",
            403: f'{resource.qualified} is forbidden: User "{self.user}" cannot {verb} resource '
            f'"{resource.plural}" in API group "{resource.group}"{where}',
            429: "Too many requests, please try again later.",
            500: 'an error on the server ("etcdserver: request timed out") has prevented the '
            "request from succeeding",
            503: "the server is currently unable to handle the request",
            504: "the server was unable to return a response in the time allotted",
        }
        message = fault.message or messages.get(fault.status, REASONS.get(fault.status, "error"))
        details: Json = {"group": resource.group, "kind": resource.plural}
        if fault.retry_after is not None:
            details["retryAfterSeconds"] = fault.retry_after
        raise ApiError(fault.status, message, details)

    # ------------------------------------------------------------ the verbs

    def _create(
        self, resource: Resource, namespace: str, body: Any, query: Mapping[str, str]
    ) -> _Answer:
        obj = self._checked_body(resource, namespace, body)
        meta = obj["metadata"]
        with self._lock:
            if (
                self.namespaces is not None
                and resource.namespaced
                and namespace not in self.namespaces
            ):
                raise ApiError(
                    404,
                    f'namespaces "{namespace}" not found',
                    {"name": namespace, "kind": "namespaces"},
                )
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = self._generated_name(resource, namespace, str(meta["generateName"]))
            headers = self._validate(resource, obj, query)
            name = str(meta.get("name", ""))
            key = self._key(resource, namespace, name)
            if key in self._store:
                raise ApiError(
                    409,
                    f'{resource.qualified} "{name}" already exists',
                    self._details(resource, name),
                    reason="AlreadyExists",
                )
            for server_set in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp"):
                meta.pop(server_set, None)
            meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), generation=1)
            if resource.namespaced:
                meta["namespace"] = namespace
            if query.get("dryRun") != "All":
                meta["resourceVersion"] = self._bump()
                self._store[key] = copy.deepcopy(obj)
            return _Answer(201, obj, headers)

    def _replace(
        self,
        resource: Resource,
        namespace: str,
        name: str,
        body: Any,
        query: Mapping[str, str],
        sub: str | None,
    ) -> _Answer:
        current = self._existing(resource, namespace, name)
        obj = self._checked_body(resource, namespace, body)
        if obj["metadata"].get("name", name) != name:
            raise ApiError(400, "the name of the object does not match the name on the URL")
        given = obj["metadata"].get("resourceVersion")
        if given is not None and given != current["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                f"Operation cannot be fulfilled on {resource.qualified} "
                f'"{name}": the object has been '
                "modified; please apply your changes to the latest version and try again",
                self._details(resource, name),
            )
        if sub == "status":
            obj = {**copy.deepcopy(current), "status": obj.get("status")}
        obj["metadata"] = {
            **obj["metadata"],
            **{
                k: current["metadata"][k]
                for k in ("uid", "creationTimestamp", "namespace")
                if k in current["metadata"]
            },
            "name": name,
        }
        headers = self._validate(resource, obj, query)
        generation = int(current["metadata"].get("generation", 1))
        if obj.get("spec") != current.get("spec"):
            generation += 1
        obj["metadata"]["generation"] = generation
        if query.get("dryRun") != "All":
            obj["metadata"]["resourceVersion"] = self._bump()
            self._store[self._key(resource, namespace, name)] = copy.deepcopy(obj)
        return _Answer(200, obj, headers)

    def _list(self, resource: Resource, namespace: str | None, query: Mapping[str, str]) -> _Answer:
        terms = _selector(query.get("labelSelector", ""))
        items = [
            copy.deepcopy(obj)
            for (g, p, ns, _), obj in sorted(self._store.items())
            if (g, p) == (resource.group, resource.plural)
            and (namespace is None or ns == namespace)
            and _matches(obj["metadata"].get("labels") or {}, terms)
        ]
        return _Answer(
            200,
            {
                "apiVersion": resource.api_version,
                "kind": f"{resource.kind}List",
                "metadata": {"resourceVersion": str(self._revision)},
                "items": items,
            },
        )

    # ------------------------------------------------------------ helpers

    def _checked_body(self, resource: Resource, namespace: str, body: Any) -> Json:
        if not isinstance(body, dict):
            raise ApiError(400, "the body of the request must be a JSON object")
        obj = copy.deepcopy(body)
        if crds.builtin_kind(resource.api_version, resource.kind) is not None:
            # Built-in types decode with the URL's group/version/kind as defaults.
            obj.setdefault("apiVersion", resource.api_version)
            obj.setdefault("kind", resource.kind)
        elif not obj.get("kind") or not obj.get("apiVersion"):
            missing = "Kind" if not obj.get("kind") else "apiVersion"
            raise ApiError(400, f"Object '{missing}' is missing in '{json.dumps(body)[:200]}'")
        if obj.get("apiVersion") != resource.api_version:
            raise ApiError(
                400,
                f"the API version in the data ({obj.get('apiVersion')}) does not match "
                f"the expected API version ({resource.api_version})",
            )
        if obj.get("kind") != resource.kind:
            raise ApiError(
                400,
                f"the kind in the data ({obj.get('kind')}) does not match "
                f"the expected kind ({resource.kind})",
            )
        if not isinstance(obj.get("metadata"), dict):
            obj["metadata"] = {}
        given = obj["metadata"].get("namespace")
        if resource.namespaced and given not in (None, "", namespace):
            raise ApiError(
                400,
                "the namespace of the provided object does not match the namespace sent "
                "on the request",
            )
        return obj

    def _validate(self, resource: Resource, obj: Json, query: Mapping[str, str]) -> dict[str, str]:
        """422 on invalid objects; unknown fields per `fieldValidation` and the server mode."""
        found = crds.metadata_problems(obj, namespaced=resource.namespaced)
        validator: crds.SchemaValidator | None = None
        if crds.builtin_kind(resource.api_version, resource.kind) is not None:
            found = crds.problems(obj)
        else:
            try:
                validator = crds.schema_validator(resource.api_version, resource.kind)
            except KeyError:
                validator = None
            if validator is not None:
                found += validator.problems(obj)
        unknown = [p for p in found if p.reason == "FieldValueUnknown"]
        invalid = [p for p in found if p.reason != "FieldValueUnknown"]
        mode = query.get("fieldValidation", "")
        headers: dict[str, str] = {}
        if unknown and mode == "Strict":
            raise ApiError(400, "strict decoding error: " + ", ".join(p.detail for p in unknown))
        if unknown and self.unknown_fields == "prune" and validator is not None:
            validator.prune(obj)
            if mode != "Ignore":
                headers["Warning"] = ", ".join(f'299 - "{p.detail}"' for p in unknown)
        else:
            invalid = unknown + invalid
        if invalid:
            name = str(obj["metadata"].get("name") or obj["metadata"].get("generateName") or "")
            listed = "; ".join(str(p) for p in invalid)
            text = listed if len(invalid) == 1 else f"[{listed}]"
            kind = f"{resource.kind}.{resource.group}" if resource.group else resource.kind
            raise ApiError(
                422,
                f'{kind} "{name}" is invalid: {text}',
                {
                    "name": name,
                    "group": resource.group,
                    "kind": resource.kind,
                    "causes": [
                        {"reason": p.reason, "message": p.detail, "field": p.field} for p in invalid
                    ],
                },
            )
        return headers

    def _generated_name(self, resource: Resource, namespace: str, prefix: str) -> str:
        base = prefix[:58]
        while True:
            name = base + "".join(random.choices(NAME_ALPHABET, k=5))
            if self._key(resource, namespace, name) not in self._store:
                return name

    def _existing(self, resource: Resource, namespace: str, name: str) -> Json:
        obj = self._store.get(self._key(resource, namespace, name))
        if obj is None:
            raise ApiError(404, self._not_found(resource, name), self._details(resource, name))
        return obj

    def _resource_named(self, plural: str) -> Resource:
        for resource in self.resources:
            if resource.plural == plural:
                return resource
        raise KeyError(f"fakekube serves no resource {plural!r}")

    def _key(
        self, resource: Resource, namespace: str | None, name: str
    ) -> tuple[str, str, str, str]:
        scoped = (namespace or "") if resource.namespaced else ""
        return (resource.group, resource.plural, scoped, name)

    def _bump(self) -> str:
        self._revision += 1
        return str(self._revision)

    @staticmethod
    def _not_found(resource: Resource, name: str) -> str:
        return f'{resource.qualified} "{name}" not found'

    @staticmethod
    def _details(resource: Resource, name: str) -> Json:
        return {"name": name, "group": resource.group, "kind": resource.plural}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, fake: FakeKube) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        answer = self.server.fake.handle(method, url.path, query, dict(self.headers.items()), raw)
        payload = json.dumps(answer.body).encode()
        self.send_response(answer.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        if answer.status == 429 or answer.status == 503:
            retry = (answer.body.get("details") or {}).get("retryAfterSeconds")
            if retry is not None:
                self.send_header("Retry-After", str(retry))
        for key, value in answer.headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests assert on `FakeKube.requests` instead."""
