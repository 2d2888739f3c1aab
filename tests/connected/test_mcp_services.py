"""An agent using MCP servers' tools (stdio and Streamable HTTP) on the Kafka services: the
same scripted run streams the same events embedded and through the runtime service, whose MCP
tool calls go out as tool invocations and run on a tool worker; each side effect happens once
per run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kafka_helpers import PARTITIONS, RunLog
from mcp_app import SERVER, make_spec
from processes import Service, until

from flowai_harness import connect, create_runtime
from flowai_harness.kafka import bus

pytestmark = pytest.mark.connected

Event = dict[str, Any]
SCRIPT = [
    ("wx_forecast", {"city": "Oslo", "days": 3}),
    ("web_shout", {"text": "over http"}),
    ("web_forecast", {"city": "Rome"}),
    ("wx_fail", {"reason": "no radar"}),
    ("wx_forecast", {"days": 2}),
]


def prompt(key: str) -> str:
    calls = [*SCRIPT, ("wx_record", {"key": key})]
    return json.dumps({"script": [{"tool": name, "args": args} for name, args in calls]})


def comparable(events: list[Event], key: str) -> list[Event]:
    """The stream without latency figures, and with the run's own ``record`` key (and the
    count of records so far) written the same for both runs."""
    text = json.dumps([e for e in events if e["type"] != "data-latency-summary"])
    return json.loads(re.sub(r"\(\d so far\)", "(n so far)", text.replace(key, "KEY")))


def results(events: list[Event]) -> list[Any]:
    return [
        e["result"] for e in events if e["type"] == "tool-invocation" and e["state"] == "result"
    ]


async def test_mcp_tools_run_the_same_embedded_and_on_tool_workers(
    kafka_bootstrap: str,
    redis_url: str,
    topics: bus.Topics,
    spawn: Callable[..., Service],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    record_log = tmp_path / "recorded.txt"
    record_log.touch()
    http = spawn("mcp-http", str(SERVER), "http", env={"MCP_TEST_LOG": str(record_log)})

    async def port_said() -> bool:
        return re.search(r"PORT (\d+)", http.log.read_text()) is not None

    await until(port_said, within=30, what="the MCP test server's port", services=[http])
    port = re.search(r"PORT (\d+)", http.log.read_text()).group(1)  # type: ignore[union-attr]
    env = {"MCP_TEST_LOG": str(record_log), "MCP_TEST_URL": f"http://127.0.0.1:{port}/mcp"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    async with create_runtime(make_spec(), interpreter="scripted") as runtime:
        embedded = [
            e async for e in runtime.run_specialist("forecaster", prompt("embedded"), "mcp-1")
        ]

    app = ("--app", "mcp_app:make_spec", "--bootstrap", kafka_bootstrap, "--prefix", topics.prefix)
    runtime_service = spawn(
        "runtime", "-m", "services.runtime", *app, "--partitions", str(PARTITIONS), env=env
    )
    worker = spawn(
        "tools", "-m", "services.tools", *app, "--role", "tools", "--redis", redis_url, env=env
    )
    async with connect(kafka_bootstrap, tenant="acme", topic_prefix=topics.prefix) as client:
        remote = [e async for e in client.query(prompt("remote"), "mcp-1", agent="forecaster")]
    assert runtime_service.alive()
    assert worker.alive()

    assert comparable(remote, "remote") == comparable(embedded, "embedded")
    outputs = results(embedded)
    assert outputs[:3] == [
        {"city": "Oslo", "days": 3, "summary": "sunny for 3 day(s)"},
        "OVER HTTP",
        {"city": "Rome", "days": 1, "summary": "sunny for 1 day(s)"},
    ]
    assert outputs[3]["error"]["code"] == "MCP_TOOL_ERROR"
    assert outputs[4]["error"]["code"] == "TOOL_ARGS_INVALID", "checked before any worker"
    assert results(remote)[5] == "recorded remote (2 so far)"
    # Each side effect once per run, and the service's calls went out to the tool workers.
    assert record_log.read_text().splitlines() == ["embedded", "remote"]
    log = await RunLog.read_whole(kafka_bootstrap, topics)
    # Keyed by their own ids, so spread over partitions in no particular order.
    invoked = sorted(i["payload"]["tool"] for i in log.invocations if i["thread_id"] == "mcp-1")
    assert invoked == ["web_forecast", "web_shout", "wx_fail", "wx_forecast", "wx_record"]
