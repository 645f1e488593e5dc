"""The admin API's request and response bodies (`/admin/...`), as pydantic models.

They are split out of admin.py because they are the API's contract, not its behaviour: the
OpenAPI schema is generated from them and the CLI and UI consume them as JSON, while admin.py
holds the router and the replay and dead-letter logic behind it. This module imports nothing
of the gateway, so the shapes can be used without importing the router.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Problem(BaseModel):
    """RFC 9457 problem details, as every gateway error."""

    type: str
    title: str
    status: int
    detail: str
    field: str | None = None
    instance: str | None = None


class BrokerInfo(BaseModel):
    broker: str
    dedup_window: float = Field(description="seconds; 0 = ingress and delivery dedup off")
    log_length: int = Field(description="about how many events the log keeps")


class StateStatus(BaseModel):
    backend: str
    prefix: str
    healthy: bool
    counters: dict[str, int]
    brokers: list[BrokerInfo]


class LoggedEvent(BaseModel):
    id: str = Field(description="log id (`<ms>-<seq>`, a Redis stream id)")
    time: str = Field(description="when it was accepted, RFC 3339")
    event: dict[str, Any] = Field(description="the event in the CloudEvents JSON format")


class EventPage(BaseModel):
    broker: str
    events: list[LoggedEvent]
    last: str | None = Field(description="pass as `after` to continue (follow)")


class ReplayRequest(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    since: datetime | None = Field(None, description="first accepted at or after (RFC 3339)")
    from_id: str | None = Field(None, alias="from", description="first log id (inclusive)")
    until: datetime | None = Field(None, description="last accepted at or before (RFC 3339)")
    type: str | None = Field(None, description="only events of this exact type")
    trigger: str | None = Field(None, description="only to this trigger (NAME or NS/NAME)")
    dry_run: bool = Field(False, description="count, publish nothing")
    limit: int | None = Field(None, gt=0, description="at most this many events")


class ReplayResult(BaseModel):
    broker: str
    trigger: str | None
    matched: int
    published: int
    dry_run: bool
    replay_id: str | None
    first: str | None
    last: str | None


class ErrorInfo(BaseModel):
    destination: str | None = None
    code: str | None = None
    data: str | None = Field(None, description="the failed response body (text)")


class DeadLetterOut(BaseModel):
    id: str
    trigger: str
    error: ErrorInfo
    event: dict[str, Any]


class DeadLetterList(BaseModel):
    trigger: str
    count: int
    dead_letters: list[DeadLetterOut]


class DlqReplayRequest(BaseModel):
    ids: list[str] = Field(default_factory=list, description="dead letters to replay; [] = all")


class DlqReplayResult(BaseModel):
    trigger: str
    replayed: list[str]
    missing: list[str]
    replay_id: str | None


class PurgeResult(BaseModel):
    trigger: str
    purged: int
