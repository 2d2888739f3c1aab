"""The ``flowai`` command line and the Kafka client's argument handling, without Kafka."""

from __future__ import annotations

import pytest

from flowai_harness import cli, connect
from flowai_harness.errors import InvalidInputError
from flowai_harness.kafka.client import _thread_of_approval


def test_usage_errors_exit_2_with_one_line_and_no_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["serve", "nothing"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err

    with pytest.raises(SystemExit) as info:
        cli.main(["replay", "thread-1"])  # --tenant is required
    assert info.value.code == 2


def test_a_bad_app_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["serve", "runtime", "--app", "no_such_module:spec"]) == 2
    err = capsys.readouterr().err
    assert "APP_INVALID" in err
    assert "Traceback" not in err


def test_an_unreachable_broker_is_reported_not_raised(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["topics", "create", "--bootstrap", "127.0.0.1:1", "--prefix", "t-cli"])
    assert code == 2
    assert "cannot reach Kafka" in capsys.readouterr().err


def test_timeline_lines_summarize_each_event() -> None:
    call = {
        "seq": 3,
        "ts": 0,
        "payload": {
            "type": "tool-invocation",
            "state": "call",
            "toolName": "add",
            "args": {"a": 1},
            "toolInvocationId": "scripted-tool-1",
        },
    }
    line = cli.timeline_line(call)
    assert line.split()[:3] == ["3", "1970-01-01T00:00:00.000+00:00", "tool-invocation"]
    assert line.endswith('add({"a":1}) [scripted-tool-1]')
    error = {
        "seq": 9,
        "ts": 0,
        "payload": {"type": "error", "error": {"code": "X", "message": "m"}},
    }
    assert cli.timeline_line(error).endswith("X: m")
    long_text = {"seq": 1, "ts": 0, "payload": {"type": "text", "agent": "a", "text": "w " * 200}}
    assert cli.timeline_line(long_text).endswith("...")


def test_approval_ids_name_their_thread() -> None:
    assert _thread_of_approval("appr:thread/with/slashes/run-2/call-1") == "thread/with/slashes"
    with pytest.raises(InvalidInputError):
        _thread_of_approval("approval-7")


def test_connect_checks_its_arguments_before_any_io() -> None:
    with pytest.raises(TypeError):
        connect("127.0.0.1:1", tenant="")
    client = connect("127.0.0.1:1", tenant="acme", topic_prefix="p")
    assert client.topics.queries == "p.queries"
    with pytest.raises(TypeError):
        client.query("hi", "")
