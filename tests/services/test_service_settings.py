"""Every service setting is an option and a ``FLOWAI_*`` environment variable, listed by
``--help``; a bad value (on the command line or in the environment) stops the service at
start with a message naming it, before it touches Kafka.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable

import pytest
from services.approvals import command as approvals_command
from services.runtime import command as runtime_command
from services.tools import command as tools_command

from flowai_harness import settings
from flowai_harness.errors import SettingError, UsageError

PARSERS: dict[str, Callable[..., argparse.ArgumentParser]] = {
    "runtime": runtime_command.parser,
    "tools": tools_command.build_parser,
    "approvals": approvals_command.build_parser,
}
MAINS = {
    "runtime": runtime_command.main,
    "tools": tools_command.main,
    "approvals": approvals_command.main,
}


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [
        action
        for action in parser._actions
        if action.option_strings and not isinstance(action, argparse._HelpAction)
    ]


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_every_option_names_its_environment_variable_in_help(name: str) -> None:
    parser = settings.bind_environment(PARSERS[name]())
    help_text = " ".join(parser.format_help().split())
    for action in options(parser):
        variable = settings.env_name(action)
        assert variable is not None
        assert variable.startswith(("FLOWAI_", "SLACK_")), variable
        assert f"env {variable}" in " ".join((action.help or "").split()), action.option_strings
        assert variable in help_text


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_every_option_takes_its_value_from_the_environment(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each variable set to a value its option takes becomes that option's value."""
    probe = settings.bind_environment(PARSERS[name]())
    chosen: dict[str, object] = {}
    for action in options(probe):
        variable = settings.env_name(action)
        assert variable is not None
        if isinstance(action, argparse._StoreTrueAction):
            raw, expected = "1", True
        elif action.choices is not None:
            choice = list(action.choices)[-1]
            raw, expected = str(choice), choice
        elif action.type in (int, settings.positive_int, settings.non_negative_int):
            raw, expected = "7", 7
        elif action.type in (float, settings.positive_float, settings.non_negative_float):
            raw, expected = "2.5", 2.5
        elif action.dest == "log_level":
            raw, expected = "debug", "DEBUG"
        elif action.dest in ("http",):
            raw, expected = "127.0.0.1:9999", "127.0.0.1:9999"
        elif isinstance(action, argparse._AppendAction):
            # Lists of keys and limits are read by the options' own code: only the set
            # value's presence is checked here.
            continue
        else:
            raw, expected = f"value-of-{action.dest}", f"value-of-{action.dest}"
        monkeypatch.setenv(variable, raw)
        chosen[action.dest] = expected
    args = settings.bind_environment(PARSERS[name]()).parse_args([])
    for dest, expected in chosen.items():
        assert getattr(args, dest) == expected, dest
    # The command line still wins over the environment.
    again = settings.bind_environment(PARSERS[name]()).parse_args(["--app", "other:thing"])
    assert again.app == "other:thing"


@pytest.mark.parametrize(
    ("name", "variable", "value", "option"),
    [
        ("runtime", "FLOWAI_PARTITIONS", "six", "--partitions"),
        ("runtime", "FLOWAI_DEDUP_WINDOW", "-1", "--dedup-window"),
        ("runtime", "FLOWAI_INTERPRETER", "clever", "--interpreter"),
        ("runtime", "FLOWAI_LOG_LEVEL", "loud", "--log-level"),
        ("tools", "FLOWAI_CONCURRENCY", "0", "--concurrency"),
        ("tools", "FLOWAI_TOOL_TIMEOUT", "soon", "--tool-timeout"),
        ("tools", "FLOWAI_ROLE", "painter", "--role"),
        ("tools", "FLOWAI_NO_STREAM_DELTAS", "maybe", "--no-stream-deltas"),
        ("approvals", "FLOWAI_CONFIRM_WAIT", "0", "--confirm-wait"),
        ("approvals", "FLOWAI_REPLICATION", "x", "--replication"),
    ],
)
def test_a_bad_environment_value_fails_at_start_naming_the_variable(
    name: str,
    variable: str,
    value: str,
    option: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingError) as caught:
        settings.bind_environment(PARSERS[name]())
    assert caught.value.code == "SETTING_INVALID"
    assert isinstance(caught.value, UsageError)
    assert caught.value.details == {"variable": variable, "option": option, "value": value}
    # The service's main says so on one line and exits 2, without a traceback.
    assert MAINS[name](["--app", "nowhere:spec"]) == 2
    err = capsys.readouterr().err
    assert variable in err
    assert option in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("name", "argv", "option"),
    [
        ("runtime", ["--session-timeout-ms", "0"], "--session-timeout-ms"),
        ("tools", ["--max-attempts", "-2"], "--max-attempts"),
        ("approvals", ["--slack-lease", "nan"], "--slack-lease"),
    ],
)
def test_a_bad_option_fails_at_start_naming_it(
    name: str, argv: list[str], option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        MAINS[name](["--app", "nowhere:spec", *argv])
    assert exited.value.code == 2
    assert option in capsys.readouterr().err


def test_the_app_may_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWAI_APP", "myapp:spec")
    for build in PARSERS.values():
        assert settings.bind_environment(build()).parse_args([]).app == "myapp:spec"


@pytest.mark.parametrize("name", ["runtime", "tools", "models", "approvals"])
def test_flowai_serve_help_lists_the_settings(name: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "flowai_harness.cli", "serve", name, "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    for variable in ("FLOWAI_APP", "FLOWAI_KAFKA_BOOTSTRAP", "FLOWAI_LOG_LEVEL"):
        assert variable in text


def test_serving_without_the_kafka_extra_says_which_extra_to_install() -> None:
    """prometheus_client made unimportable, as in an installation of the kafka extra made
    before the services exported metrics."""
    code = (
        "import sys; sys.modules['prometheus_client'] = None; "
        "from flowai_harness import cli; "
        "raise SystemExit(cli.main(['serve', 'runtime', '--app', 'x:y']))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 2, done.stderr
    assert "pip install 'flowai-harness[kafka]'" in done.stderr
    assert "prometheus_client is not installed" in done.stderr
    assert "Traceback" not in done.stderr
