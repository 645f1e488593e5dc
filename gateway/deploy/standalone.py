"""`cemesh render --target standalone`: cemesh itself runs the mesh in the cluster, every
filter included.

The gateway and dispatcher are one Knative Service (the image `func build` makes from the
repository root), reading its mesh config from a ConfigMap, with a `RabbitmqCluster`, Redis
and RBAC. The mesh config is the loaded configuration again, every function resolved to its
Service's cluster URL.

The split from render.py is at the target: everything here is what only the standalone
target needs (the gateway Service, its ConfigMap, Redis, RBAC); what the knative target shares
with it is in manifests.py, and render.py picks between the two.
"""

from __future__ import annotations

from typing import Any, Final

from brokers.delivery import Destination
from brokers.triggers import MeshConfig
from gateway.deploy.manifests import (
    EVENTING_API,
    KSVC_API,
    LABELS,
    Obj,
    Rendered,
    RenderOptions,
    delivery_yaml,
    dump_all,
    function_trigger_names,
    metadata,
    plain,
    rabbitmq_cluster,
)
from gateway.mesh import LoadedConfig

CONFIG_MOUNT: Final = "/etc/cemesh/config"
MESH_CONFIG_KEY: Final = "mesh.yaml"


def render_standalone(loaded: LoadedConfig, options: RenderOptions) -> Rendered:
    mesh = mesh_config_documents(loaded, options)
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(options.config_map, options.namespace),
        "data": {MESH_CONFIG_KEY: dump_all(mesh)},
    }
    files = {
        "rbac.yaml": _rbac(options),
        "rabbitmq.yaml": [rabbitmq_cluster(options)],
        "redis.yaml": _redis(options),
        "cemesh.yaml": [config_map, _gateway_service(options)],
    }
    return Rendered("standalone", files)


def mesh_config_documents(loaded: LoadedConfig, options: RenderOptions) -> list[Obj]:
    """Brokers and Triggers for the in-cluster gateway, every function resolved to its URL.

    The gateway in the cluster hosts no functions (each is its own Knative Service), so a
    `ref` to a function is written as the Service's cluster-local address instead.
    """
    config: MeshConfig = loaded.config
    functions = function_trigger_names(loaded.functions)
    docs: list[Obj] = []
    for broker in config.brokers.values():
        spec: Obj = {
            "delivery": delivery_yaml(broker.delivery, _cluster_destination(broker.namespace))
        }
        docs.append(
            {
                "apiVersion": EVENTING_API,
                "kind": "Broker",
                "metadata": metadata(broker.name, broker.namespace, dict(broker.annotations), {}),
                "spec": spec,
            }
        )
    for trigger in config.triggers:
        raw = plain(dict(trigger.raw_spec))
        resolve = _cluster_destination(trigger.namespace)
        raw["subscriber"] = resolve(trigger.subscriber)
        delivery = raw.get("delivery")
        if isinstance(delivery, dict) and "deadLetterSink" in delivery:
            sink = trigger.delivery.dead_letter_sink
            delivery["deadLetterSink"] = resolve(sink) if sink else delivery["deadLetterSink"]
        docs.append(
            {
                "apiVersion": EVENTING_API,
                "kind": "Trigger",
                "metadata": metadata(
                    functions.get(trigger.key, trigger.name),
                    trigger.namespace,
                    dict(trigger.annotations),
                    {},
                ),
                "spec": raw,
            }
        )
    return docs


def _cluster_destination(namespace: str) -> Any:
    def resolve(destination: Destination) -> Obj:
        if destination.function is not None:
            return {"uri": f"http://{destination.function}.{namespace}.svc.cluster.local"}
        return {"uri": str(destination.uri)}

    return resolve


def _gateway_service(options: RenderOptions) -> Obj:
    """The same Service `func deploy` makes from the root func.yaml (tests compare the two)."""
    secret = f"{options.rabbitmq}-default-user"
    env: list[Obj] = [
        {
            "name": "RABBITMQ_USERNAME",
            "valueFrom": {"secretKeyRef": {"name": secret, "key": "username"}},
        },
        {
            "name": "RABBITMQ_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": secret, "key": "password"}},
        },
        {
            "name": "CEMESH_BROKER_URL",
            "value": f"amqp://$(RABBITMQ_USERNAME):$(RABBITMQ_PASSWORD)@{options.rabbitmq}:5672/",
        },
        {"name": "CEMESH_STATE_URL", "value": f"redis://{options.redis}:6379/0"},
        {"name": "CEMESH_CONFIG", "value": CONFIG_MOUNT},
        {"name": "CEMESH_FUNCTIONS", "value": "/etc/cemesh/no-functions"},
        {"name": "CEMESH_LOG_FORMAT", "value": "json"},
    ]
    container: Obj = {
        "name": "cemesh",
        "image": options.image,
        "ports": [{"containerPort": 8080}],
        "env": env,
        "volumeMounts": [{"name": "mesh-config", "mountPath": CONFIG_MOUNT, "readOnly": True}],
        "readinessProbe": {"httpGet": {"path": "/health/readiness"}},
        "livenessProbe": {"httpGet": {"path": "/health/liveness"}},
    }
    return {
        "apiVersion": KSVC_API,
        "kind": "Service",
        "metadata": metadata(options.name, options.namespace),
        "spec": {
            "template": {
                "metadata": {
                    "labels": dict(LABELS),
                    "annotations": {
                        # The dispatcher's RabbitMQ consumers must run between HTTP requests.
                        "autoscaling.knative.dev/min-scale": str(options.min_scale),
                        "autoscaling.knative.dev/max-scale": str(options.max_scale),
                    },
                },
                "spec": {
                    "serviceAccountName": options.name,
                    "containers": [container],
                    "volumes": [{"name": "mesh-config", "configMap": {"name": options.config_map}}],
                },
            }
        },
    }


def _redis(options: RenderOptions) -> list[Obj]:
    labels = {"app.kubernetes.io/name": options.redis, **LABELS}
    selector = {"app.kubernetes.io/name": options.redis}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(options.redis, options.namespace, labels=labels),
        "spec": {
            "replicas": 1,
            # One writer: a second pod would be a second, diverging state store.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "redis",
                            "image": options.redis_image,
                            "args": ["--appendonly", "yes", "--dir", "/data"],
                            "ports": [{"name": "redis", "containerPort": 6379}],
                            "readinessProbe": {"exec": {"command": ["redis-cli", "ping"]}},
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                        }
                    ],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(options.redis, options.namespace, labels=labels),
        "spec": {
            "selector": selector,
            "ports": [{"name": "redis", "port": 6379, "targetPort": "redis"}],
        },
    }
    return [deployment, service]


def _rbac(options: RenderOptions) -> list[Obj]:
    name, namespace = options.name, options.namespace
    rules = [
        # Reading its own mesh config, and the RabbitMQ credentials the operator writes.
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]},
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": [f"{options.rabbitmq}-default-user"],
            "verbs": ["get"],
        },
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
        # Tekton-triggering functions start PipelineRuns and follow them (issue 7).
        {
            "apiGroups": ["tekton.dev"],
            "resources": ["pipelineruns"],
            "verbs": ["create", "get", "list", "watch"],
        },
    ]
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata(name, namespace)},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": metadata(name, namespace),
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": metadata(name, namespace),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        },
    ]
