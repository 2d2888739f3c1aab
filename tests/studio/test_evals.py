"""Studio's eval runs without a server: the forms ``--evals`` accepts and refuses, a run
folded from a real ``stream_eval`` on the Acme runtime (scripted), and how two runs compare,
including the refusal to compare a run that did not complete."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
from examples.acme.studio import runtime

from flowai_harness.errors import NotFoundError, RunStateError, UsageError
from flowai_harness.studio.evals import EvalRuns, compare, load_suites


def test_evals_names_a_suite_a_list_a_dict_or_a_function(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "studio_suites.py").write_text(
        textwrap.dedent(
            """
            from examples.acme.evals import SUITES
            one = SUITES[0]
            unnamed = [s.__class__(runtime=None, request=s.request) for s in SUITES]
            by_key = {"a": unnamed[0], "b": unnamed[1]}
            def made():
                return SUITES
            twice = [SUITES[0], SUITES[0]]
            wrong = [SUITES[0], 42]
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "studio_suites", raising=False)
    assert list(load_suites("studio_suites:one")) == ["inventory"]
    assert list(load_suites("studio_suites:unnamed")) == ["unnamed[0]", "unnamed[1]"]
    assert list(load_suites("studio_suites:by_key")) == ["a", "b"]
    assert list(load_suites("studio_suites:made")) == ["inventory", "inventory-fixed"]
    with pytest.raises(UsageError, match="two suites are named 'inventory'"):
        load_suites("studio_suites:twice")
    with pytest.raises(UsageError, match="'wrong\\[1\\]' is a int, not an EvalSuite"):
        load_suites("studio_suites:wrong")


class Source:
    """The embedded backend's stream_eval, on a runtime of its own."""

    def __init__(self) -> None:
        self.runtime = runtime()

    def stream_eval(self, request: object, approval_policy: str | None) -> object:
        return self.runtime.stream_eval(request, approval_policy=approval_policy)


async def finished(runs: EvalRuns, suite: str) -> str:
    run = runs.start(suite)
    while not run.done:
        await run.changed.wait()
    return run.run_id


async def test_two_runs_compare_per_test_case() -> None:
    source = Source()
    runs = EvalRuns(source, load_suites("examples.acme.evals:SUITES"))  # type: ignore[arg-type]
    try:
        first = await finished(runs, "inventory")
        second = await finished(runs, "inventory-fixed")
        results = runs.run(first).results()
        assert [c["passRate"] for c in results["testCases"]] == [1.0, 0.0]
        assert results["samplesDone"] == results["samplesTotal"] == 6

        compared = compare(runs.run(first), runs.run(second))
        assert [(r["testCaseId"], r["scoreDelta"]) for r in compared["testCases"]] == [
            ("summary", 0.0),
            ("low-stock", 1.0),
        ]

        # A run that has not completed cannot be compared; an unknown one is not found.
        running = runs.start("inventory")
        with pytest.raises(RunStateError, match="compare runs that completed"):
            compare(runs.run(first), running)
        runs.cancel(running.run_id)
        while not running.done:
            await running.changed.wait()
        assert running.status == "cancelled"
        with pytest.raises(NotFoundError, match="no eval run"):
            runs.run("eval-nope")
    finally:
        await runs.close()
        await source.runtime.aclose()
