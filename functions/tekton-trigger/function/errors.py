"""What can go wrong, and the HTTP status each answer carries.

The status decides what the broker does with the event (Knative delivery semantics): 4xx
other than 404/408/409/429 is not retried, so the event goes to the dead-letter sink with our
message in `knativeerrordata`; 5xx is retried with backoff. So an error that a retry cannot fix
(a path missing from the event, RBAC, an invalid object) must be 4xx, and one that a retry can
fix (the API down or overloaded) must be 503.
"""

from __future__ import annotations

from typing import ClassVar


class TriggerError(Exception):
    """Root of this function's errors: `status` is the HTTP answer, `reason` a stable word."""

    status: ClassVar[int] = 500

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason


class BadEvent(TriggerError):
    """The event cannot drive any binding (a path it lacks, data that is not JSON, no binding
    for its type). Retrying cannot help: 400, dead-lettered."""

    status: ClassVar[int] = 400


class Rejected(TriggerError):
    """The Kubernetes API refused the PipelineRun for good (403 RBAC, 422 invalid, 404 no such
    namespace or no Tekton, 400, 401, or a name held by another event's run): 422."""

    status: ClassVar[int] = 422


class Unavailable(TriggerError):
    """The Kubernetes API could not be reached or answered 408/429/5xx: 503, retried."""

    status: ClassVar[int] = 503


class BindingsError(ValueError):
    """The bindings file is wrong; raised at start, naming the file, the binding and the key."""
