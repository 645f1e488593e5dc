"""A fake Kubernetes API server for tests: real HTTP on 127.0.0.1, the real `kubernetes` client.

    with FakeKube(namespaces={"default"}) as kube:      # Tekton Pipelines v1 CRDs by default
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
        ...                                             # code under test, KUBECONFIG=kubeconfig
        (run,) = kube.objects("pipelineruns", "default")

See `server.py` for the conventions it follows and what it does not serve.
"""

from tests.fakekube.server import (
    ApiError,
    FakeKube,
    Recorded,
    Resource,
    status_object,
    tekton_resources,
)

__all__ = ["ApiError", "FakeKube", "Recorded", "Resource", "status_object", "tekton_resources"]
