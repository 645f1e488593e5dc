"""GitHub webhooks → raw CloudEvent + CDEvents, from payloads written after GitHub's docs."""

from __future__ import annotations

import copy
from typing import Any

import pytest

import cdevents
from brokers.event import Event
from cdevents import github
from tests.unit.webhook_mapping import FIXTURES as WEBHOOKS
from tests.unit.webhook_mapping import Webhook

FIXTURES = WEBHOOKS / "github"
DELIVERY = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
REPO = "https://github.com/octo-org/hello-world"
REPOSITORY = {"repository": {"id": "octo-org/hello-world", "source": "https://github.com"}}


HOOK = Webhook(github.translate, FIXTURES, DELIVERY)
payload, mapped, one = HOOK.payload, HOOK.mapped, HOOK.one


def test_pull_request_opened_is_change_created() -> None:
    event = one("pull_request", payload("pull_request.opened"))
    assert event.type == "dev.cdevents.change.created.0.4.0"
    assert (event.source, event.subject_id) == (REPO, "42")
    assert event.content == {
        "description": "Add retry with exponential backoff to the dispatcher",
        **REPOSITORY,
    }
    assert event.timestamp == "2024-05-14T09:12:03.000000Z"


@pytest.mark.parametrize("action", ["synchronize", "edited", "reopened"])
def test_pull_request_updates_are_change_updated(action: str) -> None:
    body = payload("pull_request.opened")
    body["action"] = action
    event = one("pull_request", body)
    assert event.type == "dev.cdevents.change.updated.0.3.0"
    assert event.content == REPOSITORY


def test_pull_request_closed_and_merged_is_change_merged() -> None:
    event = one("pull_request", payload("pull_request.closed.merged"))
    assert event.type == "dev.cdevents.change.merged.0.3.0"
    assert event.subject_id == "42"
    assert event.timestamp == "2024-05-15T16:20:44.000000Z"


def test_pull_request_closed_unmerged_is_change_abandoned() -> None:
    event = one("pull_request", payload("pull_request.closed.unmerged"))
    assert event.type == "dev.cdevents.change.abandoned.0.3.0"
    assert event.subject_id == "43"


def test_review_submitted_is_change_reviewed() -> None:
    event = one("pull_request_review", payload("pull_request_review.submitted"))
    assert event.type == "dev.cdevents.change.reviewed.0.3.0"
    assert event.subject_id == "42"
    assert event.timestamp == "2024-05-15T08:29:57.000000Z"


def test_push_creating_a_branch_is_branch_created() -> None:
    event = one("push", payload("push.branch_created"))
    assert event.type == "dev.cdevents.branch.created.0.3.0"
    assert event.subject_id == "retry-backoff"
    assert event.content == REPOSITORY
    assert event.timestamp == "2024-05-14T09:11:58.000000Z"  # repository.pushed_at


def test_push_deleting_a_branch_is_branch_deleted() -> None:
    event = one("push", payload("push.branch_deleted"))
    assert event.type == "dev.cdevents.branch.deleted.0.3.0"
    assert event.subject_id == "retry-backoff"


def test_a_plain_push_and_tags_are_published_raw_only() -> None:
    translation = github.translate("push", DELIVERY, payload("push.commits"))
    assert translation.raw.type == "com.github.push"
    assert translation.cdevents == ()
    tag = payload("push.branch_created")
    tag["ref"] = "refs/tags/v1.4.0"
    assert github.translate("push", DELIVERY, tag).cdevents == ()


def test_create_and_delete_events_are_raw_only() -> None:
    translation = github.translate("create", DELIVERY, payload("create.branch"))
    assert translation.raw.type == "com.github.create"
    assert translation.cdevents == ()


@pytest.mark.parametrize(
    ("action", "status", "conclusion", "cdevent", "outcome"),
    [
        ("requested", "queued", None, "pipelinerun.queued", None),
        ("in_progress", "in_progress", None, "pipelinerun.started", None),
        ("completed", "completed", "success", "pipelinerun.finished", "success"),
        ("completed", "completed", "failure", "pipelinerun.finished", "failure"),
        ("completed", "completed", "timed_out", "pipelinerun.finished", "failure"),
        ("completed", "completed", "cancelled", "pipelinerun.finished", "cancel"),
        ("completed", "completed", "startup_failure", "pipelinerun.finished", "error"),
        ("completed", "completed", "skipped", "pipelinerun.finished", "error"),
    ],
)
def test_workflow_runs_are_pipeline_runs(
    action: str, status: str, conclusion: str | None, cdevent: str, outcome: str | None
) -> None:
    body = payload("workflow_run.completed")
    body["action"] = action
    body["workflow_run"].update(status=status, conclusion=conclusion)
    event = one("workflow_run", body)
    assert event.event_type.name == cdevent
    assert event.subject_id == "9112345678/attempts/1"
    assert event.content["pipelineName"] == "CI"
    assert event.content["uri"] == f"{REPO}/actions/runs/9112345678"
    assert event.content.get("outcome") == outcome
    if outcome not in (None, "success"):
        assert event.content["errors"] == f"workflow run concluded {conclusion}"


@pytest.mark.parametrize(
    ("action", "conclusion", "cdevent", "outcome"),
    [
        ("in_progress", None, "taskrun.started", None),
        ("completed", "failure", "taskrun.finished", "failure"),
        ("completed", "success", "taskrun.finished", "success"),
        ("completed", "cancelled", "taskrun.finished", "cancel"),
    ],
)
def test_workflow_jobs_are_task_runs(
    action: str, conclusion: str | None, cdevent: str, outcome: str | None
) -> None:
    body = payload("workflow_job.completed")
    body["action"] = action
    body["workflow_job"]["conclusion"] = conclusion
    event = one("workflow_job", body)
    assert event.event_type.name == cdevent
    assert event.subject_id == "25034567890"
    assert event.content["taskName"] == "unit tests (3.11)"
    assert event.content["pipelineRun"] == {"id": "9112345678/attempts/1", "source": REPO}
    assert event.content.get("outcome") == outcome


def test_queued_workflow_jobs_are_raw_only() -> None:
    body = payload("workflow_job.completed")
    body["action"] = "queued"
    assert github.translate("workflow_job", DELIVERY, body).cdevents == ()


def test_release_published_is_artifact_published_with_a_purl() -> None:
    event = one("release", payload("release.published"))
    assert event.type == "dev.cdevents.artifact.published.0.3.0"
    assert event.subject_id == "pkg:github/octo-org/hello-world@v1.4.0"
    assert event.content == {"user": "hubot"}


def test_container_package_published_is_an_oci_artifact() -> None:
    event = one("registry_package", payload("registry_package.published"))
    assert event.subject_id == (
        "pkg:oci/hello-world@sha256%3A0b31b1c02ff458ad9b7b81cbdf8f028bd54699fa151f221d1e8de6817db93427"
        "?repository_url=ghcr.io/octo-org/hello-world&tag=v1.4.0"
    )


@pytest.mark.parametrize(
    ("package_type", "name", "version", "purl"),
    [
        ("npm", "hello-world", "1.4.0", "pkg:npm/%40octo-org/hello-world@1.4.0"),
        ("maven", "com.example.hello", "1.4.0", "pkg:maven/com.example/hello@1.4.0"),
        ("rubygems", "hello", "1.4.0", "pkg:gem/hello@1.4.0"),
        ("nuget", "Hello.World", "1.4.0", "pkg:nuget/Hello.World@1.4.0"),
    ],
)
def test_other_packages_get_their_ecosystems_purl(
    package_type: str, name: str, version: str, purl: str
) -> None:
    body = payload("registry_package.published")
    package = body["registry_package"]
    package.update(package_type=package_type, ecosystem=package_type, name=name)
    package["package_version"].update(version=version, container_metadata=None)
    assert one("registry_package", body).subject_id == purl


def test_successful_deployment_is_service_deployed() -> None:
    event = one("deployment_status", payload("deployment_status.created"))
    assert event.type == "dev.cdevents.service.deployed.0.3.0"
    assert event.subject_id == "octo-org/hello-world"
    assert event.content == {
        "environment": {"id": "production"},
        "artifactId": "pkg:github/octo-org/hello-world@e5bd3914e2e596debea16f433f57875b5b90bcd6",
    }


@pytest.mark.parametrize("state", ["pending", "in_progress", "failure", "error", "inactive"])
def test_other_deployment_states_are_raw_only(state: str) -> None:
    body = payload("deployment_status.created")
    body["deployment_status"]["state"] = state
    assert github.translate("deployment_status", DELIVERY, body).cdevents == ()


def test_issue_opened_is_ticket_created() -> None:
    event = one("issues", payload("issues.opened"))
    assert event.type == "dev.cdevents.ticket.created.0.2.0"
    assert event.subject_id == "41"
    assert event.content == {
        "uri": "https://github.com/octo-org/hello-world/issues/41",
        "summary": "Dispatcher gives up on the first 503",
        "creator": "mona",
        "assignees": ["hubot"],
        "labels": ["bug", "dispatch"],
        "milestone": "v1.4",
        "ticketType": "bug",
    }


def test_issue_edited_is_ticket_updated() -> None:
    body = payload("issues.opened")
    body["action"] = "labeled"
    event = one("issues", body)
    assert event.type == "dev.cdevents.ticket.updated.0.2.0"
    assert event.content["updatedBy"] == "mona"


@pytest.mark.parametrize(
    ("reason", "resolution"),
    [("completed", "completed"), ("not_planned", "withdrawn"), ("duplicate", "duplicate")],
)
def test_issue_closed_is_ticket_closed(reason: str, resolution: str) -> None:
    body = payload("issues.closed")
    body["issue"]["state_reason"] = reason
    event = one("issues", body)
    assert event.type == "dev.cdevents.ticket.closed.0.2.0"
    assert event.content["resolution"] == resolution
    assert event.content["updatedBy"] == "hubot"
    assert event.timestamp == "2024-05-15T16:20:45.000000Z"


def test_raw_type_carries_the_action() -> None:
    translation = github.translate("pull_request", DELIVERY, payload("pull_request.opened"))
    raw = translation.raw
    assert (raw.type, raw.source, raw.datacontenttype) == (
        "com.github.pull_request.opened",
        REPO,
        "application/json",
    )
    ping = github.translate("ping", DELIVERY, {"zen": "Keep it logically awesome.", "hook_id": 1})
    assert ping.raw.type == "com.github.ping"
    assert ping.raw.source == "https://github.com"
    assert ping.cdevents == ()


def test_redelivery_gives_the_same_ids_and_other_deliveries_do_not() -> None:
    body = payload("pull_request.closed.merged")
    first = github.translate("pull_request", DELIVERY, body)
    again = github.translate("pull_request", DELIVERY, copy.deepcopy(body))
    other = github.translate("pull_request", "0b989ba4-242f-11e5-81e1-c7b6966d2516", body)
    ids = [event.id for event in first.events]
    assert ids == [event.id for event in again.events]
    assert ids[0] == DELIVERY
    assert len(set(ids)) == 2
    assert not {event.id for event in other.events} & set(ids)
    assert first.cdevents[0].data == again.cdevents[0].data  # timestamps come from the payload


@pytest.mark.parametrize(
    ("event_name", "body", "field"),
    [
        ("pull_request", {"action": "opened"}, "pull_request"),
        (
            "pull_request",
            {"action": "opened", "pull_request": {"title": "x"}},
            "pull_request.number",
        ),
        (
            "workflow_run",
            {"action": "completed", "workflow_run": {"id": 1}},
            "workflow_run.html_url",
        ),
        ("issues", {"action": "opened", "issue": {"number": "x", "title": 3}}, "issue.html_url"),
        ("push", {"ref": 5}, "ref"),
    ],
)
def test_missing_or_mistyped_fields_are_payload_errors_naming_the_field(
    event_name: str, body: dict[str, Any], field: str
) -> None:
    with pytest.raises(cdevents.PayloadError) as caught:
        github.translate(event_name, DELIVERY, body)
    assert caught.value.field == field
    assert field in str(caught.value)


def test_missing_headers_and_non_object_payloads_are_payload_errors() -> None:
    with pytest.raises(cdevents.PayloadError) as caught:
        github.translate("push", "", payload("push.commits"))
    assert caught.value.field == "X-GitHub-Delivery"
    with pytest.raises(cdevents.PayloadError) as caught:
        github.translate("", DELIVERY, payload("push.commits"))
    assert caught.value.field == "X-GitHub-Event"
    with pytest.raises(cdevents.PayloadError):
        github.translate("push", DELIVERY, [1, 2])  # type: ignore[arg-type]


def test_a_payload_that_maps_to_an_invalid_cdevent_is_a_payload_error() -> None:
    body = payload("workflow_run.completed")
    body["workflow_run"]["html_url"] = "not a url"
    with pytest.raises(cdevents.PayloadError, match=r"\$\.subject\.content\.uri"):
        github.translate("workflow_run", DELIVERY, body)


def test_translation_events_are_cloudevents() -> None:
    translation = github.translate("pull_request", DELIVERY, payload("pull_request.opened"))
    assert all(isinstance(event, Event) for event in translation.events)
    assert translation.cdevents[0].get("specversion") == "1.0"
