"""Tekton CloudEvents → CDEvents, from events shaped like Tekton's controller sends them."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

import cdevents
from brokers.event import Event
from cdevents import CHAIN_LABEL, EVENT_LABEL, tekton
from cdevents.binding import json_bytes
from tests.unit.test_cdevents_conformance import conformance_available, official_problems

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks" / "tekton"
CHAIN = "4c8cb7dd-3448-41de-8768-eec704e2829b"
CAUSE = "5328c37f-bb7e-4bb7-84ea-9f5f85e4a7ce"
API = "https://kubernetes.default.svc/apis/tekton.dev/v1/namespaces/ci"


def structured(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


def to_event(doc: dict[str, Any]) -> Event:
    attributes = {key: value for key, value in doc.items() if key != "data"}
    return Event.create(attributes, json_bytes(doc["data"]))


def fixture(name: str) -> Event:
    return to_event(structured(name))


def one(event: Event) -> cdevents.CDEvent:
    translation = tekton.translate(event)
    assert translation.raw is event  # Tekton's own event passes through unchanged
    assert len(translation.cdevents) == 1
    ce = translation.cdevents[0]
    assert not conformance_available() or official_problems(ce.json()) == []
    cdevent = cdevents.from_cloudevent(ce)
    assert (ce.id, ce.subject, ce.time) == (cdevent.id, cdevent.subject_id, cdevent.timestamp)
    return cdevent


def test_pipelinerun_started() -> None:
    event = one(fixture("pipelinerun.started"))
    assert event.type == "dev.cdevents.pipelinerun.started.0.3.0"
    assert event.source == "/apis///namespaces/ci//build-and-test-x7k2p"
    assert event.subject_id == "ci/build-and-test-x7k2p"
    assert event.content == {
        "pipelineName": "build-and-test",
        "uri": f"{API}/pipelineruns/build-and-test-x7k2p",
    }
    assert event.timestamp == "2024-05-15T16:21:02.000000Z"


def test_pipelinerun_successful_is_finished_with_success() -> None:
    event = one(fixture("pipelinerun.successful"))
    assert event.type == "dev.cdevents.pipelinerun.finished.0.3.0"
    assert event.content["outcome"] == "success"
    assert "errors" not in event.content
    assert event.timestamp == "2024-05-15T16:27:31.000000Z"


def test_pipelinerun_failed_is_finished_with_failure_and_the_message() -> None:
    event = one(fixture("pipelinerun.failed"))
    assert event.content["outcome"] == "failure"
    assert event.content["errors"] == "Tasks Completed: 2 (Failed: 1, Cancelled 0), Skipped: 0"


def test_pipelinerun_cancelled_is_finished_with_cancel() -> None:
    event = one(fixture("pipelinerun.cancelled"))
    assert event.content["outcome"] == "cancel"
    assert event.content["errors"] == 'PipelineRun "build-and-test-x7k2p" was cancelled'


@pytest.mark.parametrize(
    ("reason", "outcome"),
    [
        ("Failed", "failure"),
        ("PipelineRunTimeout", "failure"),
        ("Cancelled", "cancel"),
        ("PipelineRunCancelled", "cancel"),
        ("StoppedRunFinally", "cancel"),
        ("CancelledRunFinally", "cancel"),
        ("CouldntGetPipeline", "error"),
        ("InvalidParamValue", "error"),
        ("PipelineValidationFailed", "error"),
        ("ParameterMissing", "error"),
        (None, "error"),
    ],
)
def test_pipelinerun_outcome_comes_from_the_condition_reason(
    reason: str | None, outcome: str
) -> None:
    doc = structured("pipelinerun.failed")
    condition = doc["data"]["pipelineRun"]["status"]["conditions"][0]
    condition["reason"] = reason
    condition["message"] = ""
    event = one(to_event(doc))
    assert event.content["outcome"] == outcome
    assert event.content["errors"] == (reason or "the run did not succeed")


def test_pipelinerun_queued() -> None:
    doc = structured("pipelinerun.started")
    doc["type"] = "dev.tekton.event.pipelinerun.queued.v1"
    event = one(to_event(doc))
    assert event.type == "dev.cdevents.pipelinerun.queued.0.3.0"
    assert event.timestamp == "2024-05-15T16:21:02.000000Z"


def test_taskrun_started() -> None:
    event = one(fixture("taskrun.started"))
    assert event.type == "dev.cdevents.taskrun.started.0.3.0"
    assert event.subject_id == "ci/build-and-test-x7k2p-test"
    assert event.content == {
        "taskName": "pytest",
        "uri": f"{API}/taskruns/build-and-test-x7k2p-test",
        "pipelineRun": {"id": "ci/build-and-test-x7k2p"},
    }


def test_taskrun_successful_and_failed() -> None:
    ok = one(fixture("taskrun.successful"))
    assert ok.type == "dev.cdevents.taskrun.finished.0.3.0"
    assert ok.content["outcome"] == "success"
    bad = one(fixture("taskrun.failed"))
    assert bad.content["outcome"] == "failure"
    assert bad.content["errors"] == '"step-test" exited with code 1'


def test_taskrun_cancelled() -> None:
    doc = structured("taskrun.failed")
    doc["data"]["taskRun"]["status"]["conditions"][0]["reason"] = "TaskRunCancelled"
    assert one(to_event(doc)).content["outcome"] == "cancel"


def test_a_standalone_taskrun_has_no_pipeline_run() -> None:
    doc = structured("taskrun.started")
    labels = doc["data"]["taskRun"]["metadata"]["labels"]
    for name in ("tekton.dev/pipelineRun", "tekton.dev/pipelineTask", "tekton.dev/task"):
        del labels[name]
    event = one(to_event(doc))
    assert "pipelineRun" not in event.content
    assert event.content["taskName"] == "pytest"  # from spec.taskRef


@pytest.mark.parametrize(
    "kind",
    [
        "dev.tekton.event.pipelinerun.running.v1",
        "dev.tekton.event.pipelinerun.unknown.v1",
        "dev.tekton.event.taskrun.running.v1",
        "dev.tekton.event.taskrun.unknown.v1",
        "dev.tekton.event.taskrun.queued.v1",
        "dev.tekton.event.customrun.started.v1",
    ],
)
def test_running_unknown_and_other_states_are_raw_only(kind: str) -> None:
    doc = structured("taskrun.started" if ".taskrun." in kind else "pipelinerun.started")
    doc["type"] = kind
    event = to_event(doc)
    translation = tekton.translate(event)
    assert translation.raw is event
    assert translation.cdevents == ()


def test_runs_started_by_a_cemesh_trigger_carry_the_chain_and_links() -> None:
    for name in ("pipelinerun.started", "pipelinerun.failed", "taskrun.successful"):
        event = one(fixture(name))
        assert event.chain_id == CHAIN
        assert event.links == [
            {"linkType": "RELATION", "linkKind": "TRIGGER", "target": {"contextId": CAUSE}},
            {"linkType": "PATH", "from": {"contextId": CAUSE}},
        ]


def test_runs_not_started_by_cemesh_have_no_chain() -> None:
    doc = structured("pipelinerun.started")
    labels = doc["data"]["pipelineRun"]["metadata"]["labels"]
    del labels[CHAIN_LABEL], labels[EVENT_LABEL]
    event = one(to_event(doc))
    assert event.chain_id is None
    assert "links" not in event.context


def test_duplicates_from_tekton_get_the_same_cdevent_id() -> None:
    doc = structured("pipelinerun.successful")
    resent = copy.deepcopy(doc)
    resent["id"] = "d2c1b0a9-8f7e-4d6c-9b5a-493827160504"  # Tekton mints a new id each time
    first = tekton.translate(to_event(doc)).cdevents[0]
    again = tekton.translate(to_event(resent)).cdevents[0]
    assert first.id == again.id
    started = tekton.translate(fixture("pipelinerun.started")).cdevents[0]
    assert started.id != first.id


def test_without_a_uid_the_tekton_event_id_is_used() -> None:
    doc = structured("pipelinerun.successful")
    del doc["data"]["pipelineRun"]["metadata"]["uid"]
    first = tekton.translate(to_event(doc)).cdevents[0]
    assert first.id == tekton.translate(to_event(copy.deepcopy(doc))).cdevents[0].id
    doc["id"] = "another-id"
    assert tekton.translate(to_event(doc)).cdevents[0].id != first.id


def test_the_api_url_can_be_chosen() -> None:
    event = tekton.translate(fixture("pipelinerun.started"), api_url="https://k8s.example.com/")
    uri = cdevents.from_cloudevent(event.cdevents[0]).content["uri"]
    assert uri.startswith("https://k8s.example.com/apis/tekton.dev/v1/namespaces/ci/")


def test_an_event_that_is_not_tektons_is_a_payload_error() -> None:
    doc = structured("pipelinerun.started")
    doc["type"] = "com.example.other"
    with pytest.raises(cdevents.PayloadError) as caught:
        tekton.translate(to_event(doc))
    assert caught.value.field == "type"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (b"not json", "data"),
        (b'{"taskRun": {}}', "pipelineRun"),
        (b'{"pipelineRun": {"metadata": {"namespace": "ci"}}}', "pipelineRun.metadata.name"),
        (
            b'{"pipelineRun": {"metadata": {"name": "r", "namespace": "ci"}, "status": {}}}',
            "pipelineRun.status.conditions",
        ),
    ],
)
def test_unreadable_run_data_is_a_payload_error(data: bytes, field: str) -> None:
    doc = structured("pipelinerun.failed")
    attributes = {key: value for key, value in doc.items() if key != "data"}
    with pytest.raises(cdevents.PayloadError) as caught:
        tekton.translate(Event.create(attributes, data))
    assert caught.value.field == field
