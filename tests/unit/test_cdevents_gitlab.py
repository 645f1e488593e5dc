"""GitLab webhooks → raw CloudEvent + CDEvents, from payloads written after GitLab's docs."""

from __future__ import annotations

import copy
from typing import Any

import pytest

import cdevents
from cdevents import gitlab
from tests.unit.webhook_mapping import FIXTURES as WEBHOOKS
from tests.unit.webhook_mapping import Webhook

FIXTURES = WEBHOOKS / "gitlab"
KEY = "f5b8e1d2-3c4a-4b5e-9f60-7a8b9c0d1e2f"
PROJECT = "https://gitlab.example.com/platform/cemesh"
REPOSITORY = {"repository": {"id": "platform/cemesh", "source": "https://gitlab.example.com"}}


HOOK = Webhook(gitlab.translate, FIXTURES, KEY)
payload, mapped, one = HOOK.payload, HOOK.mapped, HOOK.one


@pytest.mark.parametrize(
    ("header", "kind"),
    [
        ("Merge Request Hook", "merge_request"),
        ("Push Hook", "push"),
        ("Tag Push Hook", "tag_push"),
        ("Pipeline Hook", "pipeline"),
        ("Job Hook", "job"),
        ("Confidential Issue Hook", "confidential_issue"),
        ("System Hook", "system"),
    ],
)
def test_raw_type_is_the_event_header_in_snake_case(header: str, kind: str) -> None:
    assert gitlab.event_kind(header) == kind
    if kind in ("push", "tag_push", "system"):
        raw = gitlab.translate(header, KEY, payload("push.commits")).raw
        assert raw.type == f"com.gitlab.{kind}"
        assert raw.source == PROJECT


def test_merge_request_opened_is_change_created() -> None:
    event = one("Merge Request Hook", payload("merge_request.open"))
    assert event.type == "dev.cdevents.change.created.0.4.0"
    assert (event.source, event.subject_id) == (PROJECT, "7")
    assert event.content == {"description": "Add a retry policy to the dispatcher", **REPOSITORY}
    assert event.timestamp == "2024-05-14T09:20:11.000000Z"


def test_merge_request_merged_is_change_merged() -> None:
    event = one("Merge Request Hook", payload("merge_request.merge"))
    assert event.type == "dev.cdevents.change.merged.0.3.0"
    assert event.content == REPOSITORY
    assert event.timestamp == "2024-05-15T16:20:44.000000Z"  # from "2024-05-15 16:20:44 UTC"


@pytest.mark.parametrize(
    ("action", "cdevent"),
    [
        ("update", "change.updated"),
        ("reopen", "change.updated"),
        ("close", "change.abandoned"),
        ("approval", "change.reviewed"),
    ],
)
def test_other_merge_request_actions(action: str, cdevent: str) -> None:
    body = payload("merge_request.open")
    body["object_attributes"]["action"] = action
    assert one("Merge Request Hook", body).event_type.name == cdevent


@pytest.mark.parametrize("action", ["approved", "unapproved", "unapproval"])
def test_derived_approval_states_are_raw_only(action: str) -> None:
    body = payload("merge_request.open")
    body["object_attributes"]["action"] = action
    assert gitlab.translate("Merge Request Hook", KEY, body).cdevents == ()


def test_push_creating_a_branch_is_branch_created() -> None:
    event = one("Push Hook", payload("push.branch_created"))
    assert event.type == "dev.cdevents.branch.created.0.3.0"
    assert event.subject_id == "retry-policy"
    assert event.content == REPOSITORY


def test_push_deleting_a_branch_is_branch_deleted() -> None:
    body = payload("push.branch_created")
    body.update(before=body["after"], after="0" * 40, checkout_sha=None, commits=[])
    body["total_commits_count"] = 0
    event = one("Push Hook", body)
    assert event.type == "dev.cdevents.branch.deleted.0.3.0"


def test_a_plain_push_is_raw_only() -> None:
    translation = gitlab.translate("Push Hook", KEY, payload("push.commits"))
    assert translation.raw.type == "com.gitlab.push"
    assert translation.cdevents == ()


@pytest.mark.parametrize(
    ("status", "cdevent", "outcome"),
    [
        ("pending", "pipelinerun.queued", None),
        ("running", "pipelinerun.started", None),
        ("success", "pipelinerun.finished", "success"),
        ("failed", "pipelinerun.finished", "failure"),
        ("canceled", "pipelinerun.finished", "cancel"),
    ],
)
def test_pipelines_are_pipeline_runs(status: str, cdevent: str, outcome: str | None) -> None:
    body = payload("pipeline.failed")
    body["object_attributes"].update(status=status, detailed_status=status)
    event = one("Pipeline Hook", body)
    assert event.event_type.name == cdevent
    assert event.subject_id == "31"
    assert event.content["pipelineName"] == "Pipeline for branch: main"
    assert event.content["uri"] == f"{PROJECT}/-/pipelines/31"
    assert event.content.get("outcome") == outcome


def test_a_failed_pipeline_names_its_failed_jobs() -> None:
    event = one("Pipeline Hook", payload("pipeline.failed"))
    assert event.content["errors"] == "pipeline failed; failed jobs: unit"
    assert event.timestamp == "2024-05-15T16:24:41.000000Z"


@pytest.mark.parametrize(
    "status", ["created", "waiting_for_resource", "preparing", "manual", "scheduled", "skipped"]
)
def test_pipeline_states_that_are_no_start_or_end_are_raw_only(status: str) -> None:
    body = payload("pipeline.failed")
    body["object_attributes"]["status"] = status
    assert gitlab.translate("Pipeline Hook", KEY, body).cdevents == ()


def test_a_pipeline_without_url_or_name_uses_the_project() -> None:
    body = payload("pipeline.failed")
    del body["object_attributes"]["url"]
    body["object_attributes"]["name"] = None
    event = one("Pipeline Hook", body)
    assert event.content["uri"] == f"{PROJECT}/-/pipelines/31"
    assert event.content["pipelineName"] == "platform/cemesh"


@pytest.mark.parametrize(
    ("status", "cdevent", "outcome"),
    [
        ("running", "taskrun.started", None),
        ("success", "taskrun.finished", "success"),
        ("failed", "taskrun.finished", "failure"),
        ("canceled", "taskrun.finished", "cancel"),
    ],
)
def test_jobs_are_task_runs(status: str, cdevent: str, outcome: str | None) -> None:
    body = payload("job.failed")
    body["build_status"] = status
    event = one("Job Hook", body)
    assert event.event_type.name == cdevent
    assert event.subject_id == "380"
    assert event.content["taskName"] == "unit"
    assert event.content["uri"] == f"{PROJECT}/-/jobs/380"
    assert event.content["pipelineRun"] == {"id": "31", "source": PROJECT}
    assert event.content.get("outcome") == outcome


def test_a_failed_job_carries_its_failure_reason() -> None:
    event = one("Job Hook", payload("job.failed"))
    assert event.content["errors"] == "job failed: script_failure"


def test_an_older_job_hook_without_project_uses_the_repository_homepage() -> None:
    body = payload("job.failed")
    del body["project"]
    event = one("Job Hook", body)
    assert event.source == PROJECT
    assert event.content["uri"] == f"{PROJECT}/-/jobs/380"


def test_release_created_is_artifact_published() -> None:
    event = one("Release Hook", payload("release.create"))
    assert event.type == "dev.cdevents.artifact.published.0.3.0"
    assert event.subject_id == "pkg:generic/platform/cemesh@v1.4.0"
    assert event.timestamp == "2024-05-16T09:00:12.000000Z"


def test_successful_deployment_is_service_deployed() -> None:
    event = one("Deployment Hook", payload("deployment.success"))
    assert event.type == "dev.cdevents.service.deployed.0.3.0"
    assert event.subject_id == "platform/cemesh"
    assert event.content == {
        "environment": {"id": "production"},
        "artifactId": "pkg:generic/platform/cemesh@f0ab2c4e1b8bd1c1e1d6c2e8a5e39d4f6f8f0f11",
    }
    assert event.timestamp == "2024-05-16T09:12:41.000000Z"  # from "... 11:12:41 +0200"


@pytest.mark.parametrize("status", ["created", "running", "failed", "canceled"])
def test_other_deployment_states_are_raw_only(status: str) -> None:
    body = payload("deployment.success")
    body["status"] = status
    assert gitlab.translate("Deployment Hook", KEY, body).cdevents == ()


def test_issue_opened_is_ticket_created() -> None:
    event = one("Issue Hook", payload("issue.open"))
    assert event.type == "dev.cdevents.ticket.created.0.2.0"
    assert event.subject_id == "12"
    assert event.content == {
        "uri": f"{PROJECT}/-/issues/12",
        "summary": "Dispatcher gives up on the first 503",
        "creator": "jdoe",
        "assignees": ["ssmith"],
        "labels": ["bug"],
        "ticketType": "issue",
    }


@pytest.mark.parametrize(
    ("action", "duplicated_to", "cdevent", "resolution"),
    [
        ("update", None, "ticket.updated", None),
        ("reopen", None, "ticket.updated", None),
        ("close", None, "ticket.closed", "completed"),
        ("close", 302, "ticket.closed", "duplicate"),
    ],
)
def test_other_issue_actions(
    action: str, duplicated_to: int | None, cdevent: str, resolution: str | None
) -> None:
    body = payload("issue.open")
    body["object_attributes"].update(action=action, duplicated_to_id=duplicated_to)
    event = one("Confidential Issue Hook", body)
    assert event.event_type.name == cdevent
    assert event.content.get("resolution") == resolution
    assert event.content["updatedBy"] == "jdoe"


def test_without_idempotency_key_ids_come_from_the_payload() -> None:
    body = payload("pipeline.failed")
    first = gitlab.translate("Pipeline Hook", None, body)
    again = gitlab.translate("Pipeline Hook", None, copy.deepcopy(body))
    assert [e.id for e in first.events] == [e.id for e in again.events]
    changed = copy.deepcopy(body)
    changed["object_attributes"]["status"] = "success"
    other = gitlab.translate("Pipeline Hook", None, changed)
    assert other.raw.id != first.raw.id
    assert other.cdevents[0].id != first.cdevents[0].id


def test_the_idempotency_key_makes_redelivery_a_duplicate() -> None:
    body = payload("merge_request.merge")
    first = gitlab.translate("Merge Request Hook", KEY, body)
    again = gitlab.translate("Merge Request Hook", KEY, copy.deepcopy(body))
    assert [e.id for e in first.events] == [e.id for e in again.events]
    assert first.raw.id == KEY


@pytest.mark.parametrize(
    ("header", "body", "field"),
    [
        ("Merge Request Hook", {"object_kind": "merge_request"}, "object_attributes"),
        ("Pipeline Hook", {"object_attributes": {"id": 1}}, "object_attributes.status"),
        ("Job Hook", {"build_status": "running"}, "build_id"),
        ("Push Hook", {"ref": "refs/heads/x", "before": "0" * 40}, "project.web_url"),
    ],
)
def test_missing_fields_are_payload_errors_naming_the_field(
    header: str, body: dict[str, Any], field: str
) -> None:
    with pytest.raises(cdevents.PayloadError) as caught:
        gitlab.translate(header, KEY, body)
    assert caught.value.field == field


def test_a_missing_event_header_is_a_payload_error() -> None:
    with pytest.raises(cdevents.PayloadError) as caught:
        gitlab.translate("", KEY, payload("push.commits"))
    assert caught.value.field == "X-Gitlab-Event"


def test_an_unreadable_timestamp_is_a_payload_error() -> None:
    body = payload("pipeline.failed")
    body["object_attributes"]["finished_at"] = "yesterday"
    with pytest.raises(cdevents.PayloadError) as caught:
        gitlab.translate("Pipeline Hook", KEY, body)
    assert caught.value.field == "object_attributes.finished_at"
