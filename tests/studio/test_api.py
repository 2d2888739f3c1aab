"""Studio's HTTP API and command lines, against a real Studio process on the Acme example:
the token rule, refusals with their codes, the SSE resume from ``Last-Event-ID``, the seed's
``flowai-harness dev|serve`` with a ``define_app`` app, and the OpenAPI document."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import pytest
from examples.acme.app import restock_prompt
from studio_procs import DEADLINE_S, REPO, Process, Studio, free_port

ACME = "examples.acme.studio:runtime"


def call(
    url: str, method: str = "GET", body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any, dict[str, str]]:
    data = None if body is None else json.dumps(body).encode()
    request = Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urlopen(request, timeout=DEADLINE_S) as answer:
            raw = answer.read()
            status, answer_headers = answer.status, dict(answer.headers)
    except HTTPError as error:
        raw, status, answer_headers = error.read(), error.code, dict(error.headers)
        error.close()
    text = raw.decode()
    try:
        return status, json.loads(text), answer_headers
    except json.JSONDecodeError:
        return status, text, answer_headers


def sse_events(url: str, headers: dict[str, str], until: str) -> list[dict[str, Any]]:
    """The SSE events of ``url`` up to and including the first of type ``until``."""
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    with urlopen(Request(url, headers=headers), timeout=DEADLINE_S) as stream:
        for raw in stream:
            line = raw.decode().rstrip("\n")
            if not line:
                if current:
                    events.append(current)
                    if current.get("event") == until:
                        return events
                current = {}
            elif not line.startswith(":"):
                field, _, value = line.partition(": ")
                current[field] = json.loads(value) if field == "data" else value
    return events


def run_to_gate(app: Studio, thread_id: str) -> str:
    """Starts the restock run; returns the approval it waits at (from the thread's stream)."""
    status, _, _ = call(
        f"{app.url}/api/chat", "POST", {"prompt": restock_prompt(), "threadId": thread_id}
    )
    assert status == 202
    url = f"{app.url}/api/threads/{thread_id}/stream"
    with urlopen(url, timeout=DEADLINE_S) as stream:
        for raw in stream:
            line = raw.decode()
            if line.startswith("data: ") and '"approval-required"' in line:
                data: dict[str, Any] = json.loads(line[len("data: ") :])
                approval_id: str = data["payload"]["data"]["id"]
                return approval_id
    pytest.fail("the run never reached its approval gate")


def test_binding_beyond_loopback_needs_a_token() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "flowai_harness.cli", "studio", "--app", ACME, "--host", "0.0.0.0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 2
    assert "--token" in done.stderr
    assert "0.0.0.0" in done.stderr


def test_a_token_guards_the_api_and_the_page(studio: Callable[..., Studio]) -> None:
    app = studio("--app", ACME, "--token", "s3cret")
    status, body, _ = call(f"{app.url}/api/status")
    assert status == 401
    assert body["error"]["code"] == "STUDIO_TOKEN_REQUIRED"
    assert call(f"{app.url}/api/status", headers={"Authorization": "Bearer wrong"})[0] == 401
    status, body, _ = call(f"{app.url}/api/status", headers={"Authorization": "Bearer s3cret"})
    assert (status, body["tenant"]) == (200, "acme")
    status, _, headers = call(f"{app.url}/?token=s3cret")
    assert status == 200
    cookie = headers["set-cookie"].split(";", 1)[0]
    assert call(f"{app.url}/api/agents", headers={"Cookie": cookie})[0] == 200


def test_refusals_say_what_was_wrong(studio: Callable[..., Studio]) -> None:
    app = studio("--app", ACME)
    status, body, _ = call(f"{app.url}/api/chat", "POST", {"prompt": "hi", "agent": "planner"})
    assert (status, body["error"]["code"]) == (409, "AGENT_NOT_CHATTABLE")
    status, body, _ = call(f"{app.url}/api/chat", "POST", {"prompt": "hi", "agent": "nobody"})
    assert (status, body["error"]["code"]) == (404, "UNKNOWN_AGENT")
    assert "acme_coordinator" in body["error"]["message"]

    approval = run_to_gate(app, "busy-thread")
    status, body, _ = call(
        f"{app.url}/api/chat", "POST", {"prompt": "again", "threadId": "busy-thread"}
    )
    assert (status, body["error"]["code"]) == (409, "THREAD_BUSY")
    status, body, _ = call(
        f"{app.url}/api/approvals/appr:nope/run-1/x/decision",
        "POST",
        {"outcome": "approve", "approver": "me"},
    )
    assert (status, body["error"]["code"]) == (404, "UNKNOWN_APPROVAL")
    decision = {"outcome": "reject", "approver": "me", "feedback": "no"}
    url = f"{app.url}/api/approvals/{approval}/decision"
    assert call(url, "POST", decision)[0] == 202
    status, body, _ = call(url, "POST", decision)
    assert (status, body["error"]["code"]) == (409, "APPROVAL_ALREADY_RESOLVED")
    status, body, _ = call(f"{app.url}/api/threads/nope")
    assert (status, body["error"]["code"]) == (404, "UNKNOWN_THREAD")


def test_the_thread_stream_resumes_after_the_last_event_id(studio: Callable[..., Studio]) -> None:
    app = studio("--app", ACME)
    approval = run_to_gate(app, "resume-thread")
    assert (
        call(
            f"{app.url}/api/approvals/{approval}/decision",
            "POST",
            {"outcome": "approve", "approver": "me"},
        )[0]
        == 202
    )
    status, thread, _ = call(f"{app.url}/api/threads/resume-thread")
    assert status == 200
    assert thread["lastSeq"] > 10
    # The decision's step is logged before the POST answers; the rest of the run follows.
    events = sse_events(
        f"{app.url}/api/threads/resume-thread/stream",
        {"Last-Event-ID": "10"},
        until="caught-up",
    )
    logged = [int(e["id"]) for e in events if e.get("event") == "logged"]
    assert logged[0] == 11
    assert logged == list(range(11, events[-1]["data"]["seq"] + 1))
    assert logged[-1] >= thread["lastSeq"]
    assert all(e["data"]["seq"] == int(e["id"]) for e in events if e.get("event") == "logged")


def test_the_seeds_dev_and_serve_commands_serve_a_define_app_app(
    launch: Callable[..., Process],
) -> None:
    script = "import sys; from flowai_harness.studio.command import seed_main; "
    script += "raise SystemExit(seed_main(sys.argv[1:]))"
    dev_port, serve_port = free_port(), free_port()
    dev = launch(
        "dev", "-c", script, "dev", "--app", "tests.studio.acme_app:app", "--port", str(dev_port)
    )
    serve = launch(
        "serve",
        "-c",
        script,
        "serve",
        "--app",
        "tests.studio.acme_app:app",
        "--port",
        str(serve_port),
        "--no-studio",
    )
    dev.wait_for("flowai studio: open")
    serve.wait_for("flowai studio: open")
    status, body, _ = call(f"http://127.0.0.1:{dev_port}/api/status")
    assert (status, body["mode"], body["tenant"]) == (200, "embedded", "acme")
    assert call(f"http://127.0.0.1:{dev_port}/")[0] == 200
    assert call(f"http://127.0.0.1:{serve_port}/api/agents")[0] == 200
    assert call(f"http://127.0.0.1:{serve_port}/")[0] == 404


def test_the_api_is_documented_by_openapi(studio: Callable[..., Studio]) -> None:
    app = studio("--app", ACME)
    status, document, _ = call(f"{app.url}/api/openapi.json")
    assert status == 200
    assert {
        "/api/status",
        "/api/agents",
        "/api/threads",
        "/api/threads/{thread_id}",
        "/api/threads/{thread_id}/events",
        "/api/threads/{thread_id}/stream",
        "/api/chat",
        "/api/threads/{thread_id}/cancel",
        "/api/approvals",
        "/api/approvals/{approval_id}/decision",
        "/api/metrics",
        "/api/stream",
    } <= set(document["paths"])
    stream = document["paths"]["/api/threads/{thread_id}/stream"]["get"]
    assert "text/event-stream" in stream["responses"]["200"]["content"]


def test_cancel_ends_a_run_waiting_at_its_gate(studio: Callable[..., Studio]) -> None:
    app = studio("--app", ACME)
    approval = run_to_gate(app, "cancel-thread")
    assert call(f"{app.url}/api/threads/cancel-thread/cancel", "POST")[0] == 202
    url = f"{app.url}/api/threads/cancel-thread/stream"
    with urlopen(url, timeout=DEADLINE_S) as stream:
        finish = next(
            json.loads(raw.decode()[len("data: ") :])["payload"]
            for raw in stream
            if raw.startswith(b"data: ") and b'"type":"finish"' in raw
        )
    assert finish["finishReason"] == "cancelled"
    status, thread, _ = call(f"{app.url}/api/threads/cancel-thread")
    assert (status, thread["status"]) == (200, "cancelled")
    status, approvals, _ = call(f"{app.url}/api/approvals?status=all")
    [closed] = [a for a in approvals if a["id"] == approval]
    assert (closed["status"], closed["reason"]) == ("closed", "cancelled")
    status, body, _ = call(f"{app.url}/api/threads/cancel-thread/cancel", "POST")
    assert (status, body["error"]["code"]) == (409, "NO_ACTIVE_RUN")


EVALS = "examples.acme.evals:SUITES"


def test_an_eval_run_streams_its_envelopes_and_resumes_after_the_last_event_id(
    studio: Callable[..., Studio],
) -> None:
    app = studio("--app", ACME, "--evals", EVALS)
    status, body, _ = call(f"{app.url}/api/status")
    assert "evals" in body["capabilities"]
    status, body, _ = call(f"{app.url}/api/evals/runs", "POST", {"suite": "inventory"})
    assert status == 202
    run_id = body["runId"]
    stream = f"{app.url}/api/evals/runs/{run_id}/stream"

    events = sse_events(stream, {}, until="end")
    envelopes = [e["data"] for e in events if e.get("event") == "eval"]
    assert [e["sequence"] for e in envelopes] == list(range(len(envelopes)))
    assert [int(e["id"]) for e in events if e.get("event") == "eval"] == list(range(len(envelopes)))
    types = [e["type"] for e in envelopes]
    assert types[0] == "evalStarted"
    assert types[-1] == "evalCompleted"
    assert types.count("sampleCompleted") == 6
    assert events[-1]["data"]["status"] == "completed"

    resumed = sse_events(stream, {"Last-Event-ID": "7"}, until="end")
    assert [int(e["id"]) for e in resumed if e.get("event") == "eval"] == list(
        range(8, len(envelopes))
    )

    status, run, _ = call(f"{app.url}/api/evals/runs/{run_id}")
    assert (status, run["passRate"], run["passed"]) == (200, 0.5, False)
    failing = [s for c in run["testCases"] for s in c["samples"] if not s["passed"]]
    assert {s["threadId"] for s in failing} == {f"{run_id}.low-stock.{i}" for i in range(3)}
    # Each sample ran on Studio's runtime: its thread is in the run log.
    assert call(f"{app.url}/api/threads/{failing[0]['threadId']}")[0] == 200
    status, chart, headers = call(f"{app.url}/api/evals/runs/{run_id}/chart.svg")
    assert status == 200
    assert headers["content-type"].startswith("image/svg+xml")
    assert 'data-case="low-stock" data-series="pass@3" data-value="0.0000"' in chart


def test_eval_refusals_say_what_was_wrong(studio: Callable[..., Studio]) -> None:
    app = studio("--app", ACME, "--evals", EVALS)
    status, body, _ = call(f"{app.url}/api/evals/runs", "POST", {"suite": "nope"})
    assert (status, body["error"]["code"]) == (404, "STUDIO_UNKNOWN_SUITE")
    assert "inventory-fixed" in body["error"]["message"]
    status, body, _ = call(f"{app.url}/api/evals/runs/eval-nope")
    assert (status, body["error"]["code"]) == (404, "STUDIO_UNKNOWN_EVAL_RUN")
    _, started, _ = call(f"{app.url}/api/evals/runs", "POST", {"suite": "inventory"})
    sse_events(f"{app.url}/api/evals/runs/{started['runId']}/stream", {}, until="end")
    status, body, _ = call(f"{app.url}/api/evals/runs/{started['runId']}/cancel", "POST")
    assert (status, body["error"]["code"]) == (409, "RUN_STATE")

    bare = studio("--app", ACME)
    status, body, _ = call(f"{bare.url}/api/evals")
    assert (status, body["suites"]) == (200, [])
    assert "evals" not in call(f"{bare.url}/api/status")[1]["capabilities"]


def test_evals_must_name_eval_suites() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "flowai_harness.studio", "--app", ACME, "--evals", f"{ACME}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 2
    assert "not an EvalSuite" in done.stderr


def test_state_at_an_event_and_fork_from_it(studio: Callable[..., Studio]) -> None:
    app = studio("--app", ACME)
    status, body, _ = call(f"{app.url}/api/status")
    assert {"replay-at", "fork"} <= set(body["capabilities"])
    source_approval = run_to_gate(app, "fork-source")
    events = call(f"{app.url}/api/threads/fork-source/events")[1]
    gate = next(e["seq"] for e in events if e["payload"]["type"] == "approval-required")

    status, state, _ = call(f"{app.url}/api/threads/fork-source/state?at={gate}")
    assert (status, state["threadId"], state["seq"]) == (200, "fork-source", gate)
    assert state["status"] == "awaiting-approval"
    assert state["state"]["run"]["pending"]["approval"]["id"] == source_approval
    status, early, _ = call(f"{app.url}/api/threads/fork-source/state?at=1")
    assert status == 200
    assert early["status"] != "awaiting-approval"

    status, forked, _ = call(
        f"{app.url}/api/threads/fork-source/fork", "POST", {"at": gate, "newThreadId": "forked"}
    )
    assert status == 201
    assert (forked["threadId"], forked["source"], forked["seq"]) == ("forked", "fork-source", gate)
    assert forked["status"] == "awaiting-approval"
    assert forked["approvalId"].startswith("appr:forked/")
    # The fork's log: the source's events up to the gate, the fork fact, its own gate.
    copied = call(f"{app.url}/api/threads/forked/events")[1]
    assert [e["payload"] for e in copied[:gate]] == [e["payload"] for e in events[:gate]]
    assert copied[gate]["payload"]["type"] == "fork"
    # Each gate is pending once, in its own thread; the source's is untouched.
    pending = {a["id"]: a["threadId"] for a in call(f"{app.url}/api/approvals")[1]}
    assert pending == {source_approval: "fork-source", forked["approvalId"]: "forked"}
    assert call(f"{app.url}/api/threads/fork-source")[1]["lastSeq"] == events[-1]["seq"]


def test_state_and_fork_refusals_say_what_was_wrong(studio: Callable[..., Studio]) -> None:
    app = studio("--app", ACME)
    run_to_gate(app, "refusing")
    last = call(f"{app.url}/api/threads/refusing")[1]["lastSeq"]
    for path in ("state?at=1",):
        status, body, _ = call(f"{app.url}/api/threads/nope/{path}")
        assert (status, body["error"]["code"]) == (404, "UNKNOWN_THREAD")
    status, body, _ = call(f"{app.url}/api/threads/nope/fork", "POST", {"at": 1})
    assert (status, body["error"]["code"]) == (404, "UNKNOWN_THREAD")
    for at in (0, last + 1):
        status, body, _ = call(f"{app.url}/api/threads/refusing/state?at={at}")
        assert (status, body["error"]["code"]) == (400, "INPUT_MALFORMED")
        assert f"from 1 to {last}" in body["error"]["message"]
    status, body, _ = call(f"{app.url}/api/threads/refusing/fork", "POST", {"at": 0})
    assert (status, body["error"]["code"]) == (400, "INPUT_MALFORMED")
    # Past the end, and in the middle of the run (after its first event).
    for at in (last + 1, 2):
        status, body, _ = call(f"{app.url}/api/threads/refusing/fork", "POST", {"at": at})
        assert (status, body["error"]["code"]) == (409, "FORK_UNAVAILABLE")
    status, body, _ = call(
        f"{app.url}/api/threads/refusing/fork", "POST", {"at": last, "newThreadId": "refusing"}
    )
    assert (status, body["error"]["code"]) == (409, "FORK_UNAVAILABLE")
    assert [t["threadId"] for t in call(f"{app.url}/api/threads")[1]] == ["refusing"]
