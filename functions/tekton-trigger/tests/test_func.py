"""tekton-trigger's own tests, in the shape of func's Python template tests: call handle() with
an ASGI scope carrying the event and capture what it sends. No cluster here, so the function
runs in dry run; tests/integration/test_tekton_trigger_function.py runs it against a fake
Kubernetes API over HTTP."""

import json
from pathlib import Path

import pytest
from cloudevents.core.v1.event import CloudEvent

from function import errors, new, pipelinerun

BindingsError = errors.BindingsError
CHAIN_ID, EVENT_ID, QUEUED_ID = pipelinerun.CHAIN_ID, pipelinerun.EVENT_ID, pipelinerun.QUEUED_ID
label_value = pipelinerun.label_value

MERGED = "dev.cdevents.change.merged.0.3.0"
CHANGE = {
    "context": {
        "specversion": "0.5.1",
        "id": "5328c37f-bb7e-4bb7-84ea-9f5f85e4a7ce",
        "chainId": "4c8cb7dd-3448-41de-8768-eec704e2829b",
        "source": "https://github.com/octo-org/hello-world",
        "type": MERGED,
        "timestamp": "2026-11-22T10:00:00Z",
    },
    "subject": {
        "id": "42",
        "source": "https://github.com/octo-org/hello-world",
        "content": {"repository": {"id": "octo-org/hello-world", "source": "https://github.com"}},
    },
}


def _event(data=CHANGE, **attributes):
    base = {
        "type": MERGED,
        "source": "https://github.com/octo-org/hello-world",
        "id": CHANGE["context"]["id"],
        "specversion": "1.0",
        "datacontenttype": "application/json",
    }
    return CloudEvent({**base, **attributes}, data)


async def _call(event, env=None):
    function = new()
    function.start({"TEKTON_TRIGGER_DRY_RUN": "true", **(env or {})})
    sent = []

    async def send(reply, status=200):
        sent.append((status, reply))

    await function.handle({"event": event}, None, send)
    (answer,) = sent
    return answer


@pytest.mark.asyncio
async def test_a_merged_change_is_answered_with_pipelinerun_queued():
    status, reply = await _call(_event())
    assert status == 200
    assert reply.get_type() == "dev.cdevents.pipelinerun.queued.0.3.0"
    cdevent = reply.get_data()
    context, subject = cdevent["context"], cdevent["subject"]
    assert reply.get_id() == context["id"]
    assert reply.get_source() == context["source"] == "/functions/tekton-trigger"
    assert reply.get_subject() == subject["id"]
    assert context["specversion"] == "0.5.1"
    assert context["chainId"] == CHANGE["context"]["chainId"]
    assert {"linkType": "PATH", "from": {"contextId": CHANGE["context"]["id"]}} in context["links"]
    assert subject["content"] == {"pipelineName": "build-and-test"}


@pytest.mark.asyncio
async def test_dry_run_puts_the_pipelinerun_in_the_reply():
    _, reply = await _call(_event())
    custom = reply.get_data()["customData"]
    assert custom["dryRun"] is True
    run = custom["pipelineRun"]
    assert reply.get_subject() == f"default/{run['metadata']['name']}"
    assert run["apiVersion"] == "tekton.dev/v1"
    assert run["spec"]["pipelineRef"] == {"name": "build-and-test"}
    params = {p["name"]: p["value"] for p in run["spec"]["params"]}
    assert params == {
        "change-id": "42",
        "repository": "octo-org/hello-world",
        "repository-url": "https://github.com/octo-org/hello-world",
        "event-id": CHANGE["context"]["id"],
    }
    meta = run["metadata"]
    assert meta["labels"][EVENT_ID] == CHANGE["context"]["id"]
    assert meta["labels"][CHAIN_ID] == CHANGE["context"]["chainId"]
    assert meta["annotations"][QUEUED_ID] == reply.get_id()


@pytest.mark.asyncio
async def test_the_same_event_gives_the_same_run_name_and_reply_id():
    _, first = await _call(_event())
    _, again = await _call(_event())
    _, other = await _call(_event(source="https://github.com/octo-org/other"))
    assert first.get_subject() == again.get_subject()
    assert first.get_id() == again.get_id()
    assert other.get_subject() != first.get_subject()
    name = first.get_subject().split("/")[1]
    assert name.startswith("build-and-test-")
    assert len(name) <= 63


@pytest.mark.asyncio
async def test_a_missing_path_is_a_400_naming_it():
    data = json.loads(json.dumps(CHANGE))
    del data["subject"]["content"]["repository"]
    status, reply = await _call(_event(data))
    assert status == 400
    assert reply.get_type() == "dev.functions.error"
    error = reply.get_data()
    assert error["reason"] == "MissingPath"
    assert "$(body.subject.content.repository.id)" in error["message"]
    assert "body.subject.content has no key 'repository'" in error["message"]


@pytest.mark.asyncio
async def test_an_event_type_without_binding_is_a_400():
    status, reply = await _call(_event(type="com.example.unbound"))
    assert status == 400
    assert reply.get_data()["reason"] == "NoBinding"
    assert "com.example.unbound" in reply.get_data()["message"]


@pytest.mark.asyncio
async def test_data_that_is_not_json_is_a_400():
    event = CloudEvent(
        {
            "type": MERGED,
            "source": "/s",
            "id": "e-1",
            "specversion": "1.0",
            "datacontenttype": "text/plain",
        },
        "merged!",
    )
    status, reply = await _call(event)
    assert status == 400
    assert reply.get_data()["reason"] == "DataNotJSON"


BINDINGS = """
bindings:
  - name: push
    type: com.github.push*
    pipeline: on-push
    namePrefix: Push To Main!
    params:
      - {name: ref, value: "$(body.ref)"}
      - {name: head, value: "$(body.commits.0.id)"}
      - {name: count, value: "$(body.size)"}
      - {name: sender, value: "$(extensions.sender)"}
      - {name: what, value: "$(context.type) from $(context.source)"}
      - {name: literal, value: "$$(params.x)"}
      - {name: ids, value: ["$(context.id)", "fixed"]}
      - {name: repo, value: {name: "$(body.repository.full\\\\.name)"}}
    serviceAccountName: ci-runner
    timeouts: {pipeline: 1h, tasks: 50m}
    labels: {team: ci, ref: "$(body.ref)"}
    annotations: {example.com/source: "$(context.source)"}
"""


@pytest.mark.asyncio
async def test_a_bindings_file_from_the_environment(tmp_path):
    path = tmp_path / "bindings.yaml"
    path.write_text(BINDINGS)
    data = {
        "ref": "refs/heads/main",
        "size": 2,
        "commits": [{"id": "abc123"}],
        "repository": {"full.name": "octo/hello"},
    }
    event = _event(data, type="com.github.push", id="delivery-1", sender="octocat")
    status, reply = await _call(event, {"TEKTON_TRIGGER_BINDINGS": str(path)})
    assert status == 200
    run = reply.get_data()["customData"]["pipelineRun"]
    params = {p["name"]: p["value"] for p in run["spec"]["params"]}
    assert params == {
        "ref": "refs/heads/main",
        "head": "abc123",
        "count": "2",
        "sender": "octocat",
        "what": "com.github.push from https://github.com/octo-org/hello-world",
        "literal": "$(params.x)",
        "ids": ["delivery-1", "fixed"],
        "repo": {"name": "octo/hello"},
    }
    assert run["metadata"]["name"].startswith("push-to-main-")
    assert run["spec"]["taskRunTemplate"] == {"serviceAccountName": "ci-runner"}
    assert run["spec"]["timeouts"] == {"pipeline": "1h", "tasks": "50m"}
    labels = run["metadata"]["labels"]
    assert labels["team"] == "ci"
    assert labels["ref"] == label_value("refs/heads/main") != "refs/heads/main"
    assert run["metadata"]["annotations"]["example.com/source"] == event.get_source()
    # not a CDEvent: the chain starts at this event
    assert reply.get_data()["context"]["chainId"] == "delivery-1"
    assert labels[CHAIN_ID] == "delivery-1"


@pytest.mark.asyncio
async def test_a_missing_extension_is_named(tmp_path):
    path = tmp_path / "bindings.yaml"
    path.write_text(BINDINGS)
    data = {"ref": "r", "size": 1, "commits": [{"id": "x"}], "repository": {"full.name": "o/r"}}
    status, reply = await _call(
        _event(data, type="com.github.push"), {"TEKTON_TRIGGER_BINDINGS": str(path)}
    )
    assert status == 400
    assert "$(extensions.sender)" in reply.get_data()["message"]


def test_a_bad_bindings_file_stops_the_start_naming_the_key(tmp_path):
    path = tmp_path / "bindings.yaml"
    path.write_text("bindings:\n  - {name: b, type: t, pipeline: p, serviceAcount: x}\n")
    with pytest.raises(BindingsError, match=r"binding 'b': unknown key\(s\) serviceAcount"):
        new().start({"TEKTON_TRIGGER_BINDINGS": str(path), "TEKTON_TRIGGER_DRY_RUN": "true"})


def test_a_required_cluster_that_is_not_configured_stops_the_start():
    with pytest.raises(ValueError, match="no cluster is configured"):
        new().start({"TEKTON_TRIGGER_DRY_RUN": "false"})


def test_an_exported_kubeconfig_does_not_leave_dry_run_under_cemesh_up(tmp_path):
    function = new()
    function.start({"KUBECONFIG": str(tmp_path / "absent"), "CEMESH_FUNCTION": "tekton-trigger"})
    assert function.cluster is None
    assert function.ready() == (True, "ready (dry run)")
    assert function.alive() == (True, "alive")
    function.stop()


def test_the_shipped_bindings_load():
    function = new()
    function.start({"TEKTON_TRIGGER_DRY_RUN": "true"})
    assert Path(function.bindings.origin).name == "bindings.yaml"
    assert [b.type for b in function.bindings.bindings] == [MERGED]
