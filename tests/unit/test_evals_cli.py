"""``flowai eval run`` and ``flowai eval from-log``: exit codes, the results table, the JSON
artifact and the self-contained HTML report, each suite form (module:attr, a request file with
--runtime, a replay suite with --app).

The suites are small modules written to tmp_path and run scripted, through ``cli.main``.
"""

from __future__ import annotations

import json
import re
import shutil
import textwrap
from pathlib import Path

import pytest

from flowai_harness.cli import main

GOLDEN = Path(__file__).parents[1] / "golden"

SUITE_MODULE = """
    import json
    from flowai_harness import create_runtime, define_runtime, define_specialist, define_tool
    from flowai_harness.evals import (
        EvalSuite, define_eval_config, define_eval_request, define_test_case,
    )

    def add(args, ctx):
        return {"sum": args["a"] + args["b"]}

    SPEC = define_runtime(
        ("acme", "v1"),
        agents=[define_specialist(
            "calc", model="claude-haiku-4-5", prompt="Add.",
            tools=[define_tool("add", {"a": int, "b": int}, description="Add.").bind(add)],
        )],
        providers={"anthropic": {}},
    )

    def runtime():
        return create_runtime(SPEC, interpreter="scripted")

    def script(a, b):
        return json.dumps({"tool": "add", "args": {"a": a, "b": b}})

    CASES = [
        define_test_case("adds", script(1, 2), expected_trajectory=["add"]),
        define_test_case("adds-again", script(3, 4), expected_trajectory=["add"]),
    ]
    CONFIG = define_eval_config(
        mode="specialist", target_agent_id="calc", samples_per_case=2, k_values=[1, 2],
    )
    REQUEST = define_eval_request(workspace_id="w", tenant_id="acme", test_cases=CASES,
                                  config=CONFIG)

    passing = EvalSuite(runtime=runtime, request=REQUEST)

    def failing():
        wrong = define_test_case("wrong", script(1, 1), expected_trajectory=["subtract"])
        return EvalSuite(
            runtime=runtime,
            request=define_eval_request(workspace_id="w", tenant_id="acme",
                                        test_cases=[*CASES, wrong], config=CONFIG),
            min_pass_rate=0.9,
        )
"""

GOLDEN_APP = """
    import importlib.util, pathlib
    _path = pathlib.Path({golden!r}) / "scenarios.py"
    _spec = importlib.util.spec_from_file_location("golden_scenarios_cli", _path)
    _module = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_module)

    def spec():
        # Never called for an unchanged thread: every answer comes from the recording.
        return _module.spec({{"anthropic": {{"apiKey": "unused", "baseUrl": "http://127.0.0.1:9"}}}})
"""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def write_module(workdir: Path, name: str, body: str) -> None:
    (workdir / f"{name}.py").write_text(textwrap.dedent(body))


def test_a_passing_suite_exits_0_and_writes_the_artifact_and_the_report(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_module(workdir, "suite_pass", SUITE_MODULE)

    code = main(["eval", "run", "suite_pass:passing", "--out", "out"])

    out, err = capsys.readouterr()
    assert code == 0, err
    assert re.search(r"adds\s+2/2\s+1\.00\s+@1=1\.00 @2=1\.00\s+PASS", out)
    assert "PASS: 2/2 test cases" in out
    assert re.search(r"\[4/4\] adds-again #[01]: pass", err)  # one line per sample
    (artifact_path,) = (workdir / "out").glob("*.json")
    artifact = json.loads(artifact_path.read_text())
    assert artifact["summary"]["passRate"] == 1.0
    report = artifact_path.with_suffix(".html").read_text()
    assert "<svg" in report
    assert "pass@2" in report
    # Self-contained: nothing is fetched from anywhere.
    assert not re.search(r"""(src|href)=["']?https?:""", report)
    assert "<script" not in report


def test_a_suite_that_misses_its_pass_rate_exits_1(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_module(workdir, "suite_fail", SUITE_MODULE)

    code = main(["eval", "run", "suite_fail:failing", "--out", "out"])

    out, _ = capsys.readouterr()
    assert code == 1
    assert re.search(r"wrong\s+0/2\s+0\.00.*FAIL", out)
    assert "FAIL: 2/3 test cases" in out


def test_the_min_pass_rate_option_overrides_the_suites(workdir: Path) -> None:
    write_module(workdir, "suite_lenient", SUITE_MODULE)

    assert main(["eval", "run", "suite_lenient:failing", "--min-pass-rate", "0.6"]) == 0


def test_a_request_file_runs_on_the_runtime_named_by_runtime(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_module(workdir, "suite_file", SUITE_MODULE)
    from suite_file import REQUEST  # type: ignore[import-not-found]

    (workdir / "request.json").write_text(json.dumps(REQUEST.to_wire()))

    code = main(["eval", "run", "request.json", "--runtime", "suite_file:runtime"])

    assert code == 0, capsys.readouterr().err


def test_a_request_file_without_a_runtime_is_a_usage_error(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / "request.json").write_text("{}")

    assert main(["eval", "run", "request.json"]) == 2
    assert "--runtime module:attr" in capsys.readouterr().err


def test_a_suite_reference_that_is_not_a_suite_is_a_usage_error(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_module(workdir, "suite_bad", SUITE_MODULE)

    assert main(["eval", "run", "suite_bad:CONFIG"]) == 2
    assert "must name an EvalSuite" in capsys.readouterr().err


def test_from_log_then_run_replays_the_recorded_threads_as_a_ci_gate(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(GOLDEN / "acme", workdir / "logs" / "acme")
    write_module(workdir, "golden_app", GOLDEN_APP.format(golden=str(GOLDEN)))

    made = main(
        ["eval", "from-log", "logs", "--tenant", "acme", "--agent", "router",
         "--thread", "live-routing", "--tag", "nightly", "--out", "suite.json"]
    )  # fmt: skip
    assert made == 0
    assert "wrote 1 test case(s)" in capsys.readouterr().out

    code = main(["eval", "run", "suite.json", "--app", "golden_app:spec", "--out", "out"])

    out, err = capsys.readouterr()
    assert code == 0, err
    assert re.search(r"live-routing\s+1/1.*PASS \(no divergence\)", out)
    (artifact_path,) = (workdir / "out").glob("*.json")
    sample = json.loads(artifact_path.read_text())["testCases"][0]["samples"][0]
    assert sample["metadata"]["replay"]["divergence"] is None
    assert sample["metadata"]["replay"]["reusedModelResponses"] == 3


def test_a_replay_suite_without_app_is_a_usage_error(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(GOLDEN / "acme", workdir / "logs" / "acme")
    main(["eval", "from-log", "logs", "--tenant", "acme", "--out", "suite.json"])
    capsys.readouterr()

    assert main(["eval", "run", "suite.json"]) == 2
    assert "--app module:attr" in capsys.readouterr().err


def test_from_log_needs_exactly_one_source_and_a_match(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(GOLDEN / "acme", workdir / "logs" / "acme")

    assert main(["eval", "from-log", "--tenant", "acme", "--out", "s.json"]) == 2
    assert "either LOG_PATH" in capsys.readouterr().err
    assert main(["eval", "from-log", "logs", "--tenant", "acme", "--agent", "nobody",
                 "--out", "s.json"]) == 2  # fmt: skip
    assert "no recorded thread passed the filters" in capsys.readouterr().err
    assert not (workdir / "s.json").exists()
