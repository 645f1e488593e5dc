"""Settings, loaded once at the edge (CLI or the root function) and passed down.

Every field is also an environment variable with the `CEMESH_` prefix (`CEMESH_BROKER_URL`,
`CEMESH_PORT`...); CLI flags win over the environment.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CEMESH_", frozen=True, extra="ignore")

    config: Path = Field(
        Path("config"), description="Directory of Knative YAML (Brokers, Triggers)"
    )
    functions: Path = Field(Path("functions"), description="Directory of Knative function projects")
    host: str = Field("127.0.0.1", description="Address the gateway binds")
    port: int = Field(8080, ge=0, le=65535, description="Port the gateway binds")
    broker_url: str = Field(
        "memory://", description="memory:// or amqp://user:pass@host:port/vhost"
    )
    broker_prefix: str = Field(
        "cemesh",
        pattern=r"^[a-z0-9][a-z0-9-]*$",
        description="RabbitMQ names start with it: one prefix is one mesh",
    )
    state_url: str = Field("memory://", description="memory:// or redis://host:port/db")
    namespace: str = Field("default", description="Namespace of objects that name none")
    max_body_bytes: int = Field(1024 * 1024, gt=0, description="Largest single-event request body")
    max_batch_bytes: int = Field(4 * 1024 * 1024, gt=0, description="Largest batch request body")
    max_concurrency: int = Field(1024, gt=0, description="Concurrent requests before 503")
    tenant_concurrency: int | None = Field(
        None, gt=0, description="Concurrent requests of one token or namespace (default 1/4)"
    )
    max_pending_requests: int = Field(
        32, gt=0, description="Request-reply waits one token or namespace may hold: 429"
    )
    body_timeout: float = Field(30.0, gt=0, description="Seconds a request body may take: 408")
    max_header_bytes: int = Field(
        64 * 1024, gt=0, description="Largest request head (request line and headers): 431"
    )
    max_headers: int = Field(200, gt=0, description="Most header fields in a request: 431")
    header_timeout: float = Field(10.0, gt=0, description="Seconds a request head may take: 408")
    max_attributes: int = Field(100, gt=0, description="Most attributes in an event: 400")
    max_attribute_bytes: int = Field(
        8 * 1024, gt=0, description="Largest attribute value of an event: 413"
    )
    max_attributes_bytes: int = Field(
        32 * 1024,
        gt=0,
        description="Largest total of an event's attributes (below RabbitMQ's frame size): 413",
    )
    memory_queue_length: int = Field(
        10_000, gt=0, description="memory:// broker: events queued per trigger before 503"
    )
    memory_queue_bytes: int = Field(
        64 * 1024 * 1024, gt=0, description="memory:// broker: bytes queued per trigger before 503"
    )
    tokens_file: Path | None = Field(None, description="YAML of hashed bearer tokens (see auth)")
    allow_open: bool = Field(False, description="Serve without tokens on a non-loopback address")
    rate_limit: float | None = Field(None, gt=0, description="Default requests/s per token")
    rate_burst: int | None = Field(None, gt=0, description="Default burst per token")
    request_timeout: float = Field(30.0, gt=0, description="Default request-reply wait (s)")
    request_timeout_max: float = Field(300.0, gt=0, description="Largest ?timeout= accepted (s)")
    github_secret: str | None = Field(None, description="GitHub webhook secret (HMAC-SHA256)")
    gitlab_token: str | None = Field(None, description="GitLab webhook secret token")
    tekton_token: str | None = Field(None, description="Shared token for Tekton's events sink")
    allow_unsigned_webhooks: bool = Field(False, description="Accept webhooks with no secret set")
    webhook_broker: str = Field("default/default", description="Broker webhooks publish to")
    replica: str = Field(
        default_factory=lambda: uuid.uuid4().hex[:12],
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$",
        description="This replica's id (request-reply routing)",
    )
    shutdown_grace: float = Field(10.0, ge=0, description="Seconds in-flight deliveries may finish")
    log_format: str = Field("text", pattern="^(text|json)$", description="text or json logs")
    log_level: str = Field("INFO", description="Python logging level")
    trace_start: bool = Field(False, description="Start a trace for events that arrive with none")
    otel_endpoint: str | None = Field(
        None,
        validation_alias=AliasChoices(
            "otel_endpoint", "CEMESH_OTEL_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"
        ),
        description="OTLP/HTTP endpoint for spans (needs the `otel` extra)",
    )
    live_payload_bytes: int = Field(0, ge=0, description="Event data shown by /ui (0: none)")
