"""Studio in a real browser (Debian's Chromium), against the Acme example on an embedded
runtime: a chat whose answer streams in and whose sub-agent calls a tool; an approval decided
in the inbox that resumes the run shown in the chat; a timeline that keeps every event once
across a Studio restart (the browser reconnects from the last seq it showed); a fork from the
timeline at an approval gate, whose own gate is decided in the inbox."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from examples.acme.app import restock_prompt
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait
from studio_procs import DEADLINE_S, Process, Studio, free_port

pytestmark = pytest.mark.browser

ACME = "examples.acme.studio:runtime"
ANALYST_ANSWER = "There are 4 products with 164 units on hand in total."
COORDINATOR_ANSWER = "The warehouse holds 164 units across 4 products."


def wait(driver: Any) -> WebDriverWait[Any]:
    return WebDriverWait(driver, DEADLINE_S)


def css(driver: Any, selector: str) -> Any:
    """The element matching ``selector`` once it is there."""
    return wait(driver).until(ec.presence_of_element_located((By.CSS_SELECTOR, selector)))


def fake_model_script(path: Path) -> Path:
    """The coordinator hands the question to data_analyst, which calls inventory_summary and
    answers in a streamed sentence; the coordinator then answers, streamed too."""
    turns = [
        {
            "for_model": "claude-sonnet-4-6",
            "tool_calls": [
                {
                    "name": "call_agent",
                    "args": {"agent": "data_analyst", "prompt": "How many units are on hand?"},
                }
            ],
            "usage": {"input_tokens": 820, "output_tokens": 40},
        },
        {
            "for_model": "claude-haiku-4-5",
            "tool_calls": [{"name": "inventory_summary", "args": {}}],
            "usage": {"input_tokens": 300, "output_tokens": 20},
        },
        {
            "for_model": "claude-haiku-4-5",
            "text": ANALYST_ANSWER,
            "chunk_delay_s": 0.05,
            "usage": {"input_tokens": 360, "output_tokens": 14},
        },
        {
            "for_model": "claude-sonnet-4-6",
            "text": COORDINATOR_ANSWER,
            "chunk_delay_s": 0.05,
            "usage": {"input_tokens": 900, "output_tokens": 12},
        },
    ]
    path.write_bytes(orjson.dumps({"turns": turns}))
    return path


def send(driver: Any, studio: Studio, prompt: str, agent: str = "acme_coordinator") -> None:
    driver.get(f"{studio.url}/#/chat")
    Select(css(driver, "select[name=agent]")).select_by_value(agent)
    box = css(driver, "textarea[name=prompt]")
    # Long scripted prompts go in through the DOM: typing them key by key is slow.
    driver.execute_script(
        "arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input'));",
        box,
        prompt,
    )
    driver.find_element(By.CSS_SELECTOR, ".composer button.primary").click()
    css(driver, ".user-message")


def test_chat_streams_the_answer_and_opens_a_sub_agents_tool_call(
    browser: Any,
    studio: Callable[..., Studio],
    launch: Callable[..., Process],
    tmp_path: Path,
    shoot: Callable[[Any, str], None],
) -> None:
    script = fake_model_script(tmp_path / "turns.json")
    fake = launch(
        "fake-provider",
        "-m",
        "flowai_harness.testing.fake_provider",
        "--script",
        str(script),
    )
    url = fake.wait_for("fake provider listening on").rsplit(" ", 1)[-1]
    app = studio(
        "--app",
        ACME,
        "--interpreter",
        "live",
        env={"ANTHROPIC_API_KEY": "fake-key", "ANTHROPIC_BASE_URL": url},
    )
    send(browser, app, "How many units do we have on hand?")

    css(browser, ".note.end[data-finish=stop]")
    # The analyst's answer came as live deltas (more than one), then was not repeated when
    # its complete text was logged.
    answers = browser.find_elements(By.CSS_SELECTOR, ".sub-agent[data-agent=data_analyst] .text")
    assert [a.find_element(By.CSS_SELECTOR, ".body").text for a in answers] == [ANALYST_ANSWER]
    assert answers[0].get_attribute("data-source") == "live"
    assert int(answers[0].get_attribute("data-deltas")) > 1
    final = browser.find_elements(
        By.CSS_SELECTOR, "#conversation > .text[data-agent=acme_coordinator]"
    )
    assert [f.find_element(By.CSS_SELECTOR, ".body").text for f in final] == [COORDINATOR_ANSWER]

    # The tool call nests under the sub-agent and opens into its arguments and result.
    call = browser.find_element(
        By.CSS_SELECTOR,
        ".sub-agent[data-agent=data_analyst] details.tool-call[data-tool=inventory_summary]",
    )
    assert call.get_attribute("data-state") == "result"
    call.find_element(By.TAG_NAME, "summary").click()
    shown = [pre.text for pre in call.find_elements(By.CSS_SELECTOR, "pre.json")]
    assert [json.loads(text) for text in shown] == [{}, {"products": 4, "units": 164}]
    shoot(browser, "chat")

    # Costs: the live run is priced, per run and per agent.
    browser.get(f"{app.url}/#/costs")
    charts = css(browser, "#costs .charts")
    captions = [c.text for c in charts.find_elements(By.TAG_NAME, "figcaption")]
    assert "Cost per agent (USD)" in captions
    agents = browser.find_elements(By.CSS_SELECTOR, "#costs table.runs tbody tr")
    assert sorted(row.find_elements(By.TAG_NAME, "td")[0].text for row in agents) == [
        "acme_coordinator",
        "data_analyst",
    ]
    shoot(browser, "costs")


def test_an_approval_decided_in_the_inbox_resumes_the_run_in_the_chat(
    browser: Any, studio: Callable[..., Studio], shoot: Callable[[Any, str], None]
) -> None:
    app = studio("--app", ACME, "--interpreter", "scripted")
    send(browser, app, restock_prompt())
    card = css(browser, "#conversation .approval-card")
    assert "restock-1" in card.text
    chat_tab = browser.current_window_handle

    browser.switch_to.new_window("tab")
    browser.get(f"{app.url}/#/approvals")
    inbox_card = css(browser, ".approval-list .approval-card")
    assert "Plan approval: restock-1" in inbox_card.text
    assert "reorder_products" in inbox_card.text
    shoot(browser, "approvals")
    name = inbox_card.find_element(By.CSS_SELECTOR, "input[name=approver]")
    name.clear()
    name.send_keys("dana")
    inbox_card.find_element(By.CSS_SELECTOR, "textarea[name=feedback]").send_keys("go ahead")
    inbox_card.find_element(By.CSS_SELECTOR, "button.approve").click()
    css(browser, ".decided-row .status-approve")

    browser.switch_to.window(chat_tab)
    css(browser, "#conversation .note.end[data-finish=stop]")
    outcome = css(browser, "#conversation .approval-card .outcome")
    assert "approve" in outcome.text
    assert "dana" in outcome.text
    execute = browser.find_element(
        By.CSS_SELECTOR, "details.tool-call[data-tool=executePlan][data-state=result]"
    )
    execute.find_element(By.TAG_NAME, "summary").click()
    result = json.loads(execute.find_elements(By.CSS_SELECTOR, "pre.json")[-1].text)
    assert result["entitiesAffected"] == 6


def test_the_timeline_reconnects_from_its_last_seq_without_losing_events(
    browser: Any, studio: Callable[..., Studio], tmp_path: Path, shoot: Callable[[Any, str], None]
) -> None:
    logs = str(tmp_path / "runlogs")
    port = free_port()
    first = studio("--app", ACME, "--log-path", logs, port=port)
    send(browser, first, restock_prompt())
    css(browser, "#conversation .approval-card")
    thread_id = browser.execute_script("return location.hash").split("/", 2)[2]

    browser.get(f"{first.url}/#/runs/{thread_id}")
    css(browser, "#timeline tr.type-approval-required")
    css(browser, "#timeline-connection[data-state=live]")
    before = browser.execute_script("return document.querySelectorAll('#timeline tr.event').length")

    # Studio goes away mid-run; the page notices and keeps trying.
    first.process.kill()
    css(browser, "#timeline-connection[data-state=reconnecting]")

    # A new Studio on the same run log; the run goes on there while the page reconnects.
    second = studio("--app", ACME, "--log-path", logs, port=port)
    from urllib.request import Request, urlopen

    approval = f"appr:{thread_id}/run-1/scripted-tool-5"
    body = orjson.dumps({"outcome": "approve", "approver": "ops"})
    request = Request(
        f"{second.url}/api/approvals/{approval}/decision",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    with urlopen(request, timeout=DEADLINE_S) as answer:
        assert answer.status == 202

    css(browser, "#timeline tr.type-finish")
    css(browser, "#timeline-connection[data-state=live]")
    with urlopen(f"{second.url}/api/threads/{thread_id}/events", timeout=DEADLINE_S) as answer:
        logged = [entry["seq"] for entry in orjson.loads(answer.read())]
    wait(browser).until(
        lambda d: (
            d.execute_script("return document.querySelectorAll('#timeline tr.event').length")
            == len(logged)
        )
    )
    shown = [
        int(seq)
        for seq in browser.execute_script(
            "return [...document.querySelectorAll('#timeline tr.event')].map(r => r.dataset.seq)"
        )
    ]
    assert shown == logged == list(range(1, len(logged) + 1))
    assert before < len(logged)
    assert (
        int(browser.find_element(By.ID, "timeline-connection").get_attribute("data-reconnects"))
        >= 1
    )
    # The page's feed of thread changes reconnected too: the header tells the run is done.
    css(browser, ".thread-head .status-finished")
    shoot(browser, "timeline")
    browser.get(f"{second.url}/#/runs")
    css(browser, f"#threads tr[data-thread-id='{thread_id}'] .status-finished")
    shoot(browser, "runs")


def api_get(studio: Studio, path: str) -> Any:
    from urllib.request import urlopen

    with urlopen(f"{studio.url}{path}", timeout=DEADLINE_S) as answer:
        return orjson.loads(answer.read())


def test_a_fork_from_the_timeline_waits_at_its_own_gate_decided_in_the_inbox(
    browser: Any, studio: Callable[..., Studio], shoot: Callable[[Any, str], None]
) -> None:
    app = studio("--app", ACME, "--interpreter", "scripted")
    send(browser, app, restock_prompt())
    css(browser, "#conversation .approval-card")
    source = browser.execute_script("return location.hash").split("/", 2)[2]
    [source_approval] = [a["id"] for a in api_get(app, "/api/approvals")]

    browser.get(f"{app.url}/#/runs/{source}")
    gate = css(browser, "#timeline tr.type-approval-required")
    gate_seq = int(gate.get_attribute("data-seq"))
    # State here: the thread as it was right after the gate opened.
    gate.find_element(By.CSS_SELECTOR, "button.state-here").click()
    css(browser, f"#state-panel[data-seq='{gate_seq}'] .status-awaiting-approval")
    state = json.loads(browser.find_element(By.CSS_SELECTOR, "#state-panel pre.json").text)
    assert state["run"]["pending"]["approval"]["id"] == source_approval
    shoot(browser, "timeline-state")

    gate.find_element(By.CSS_SELECTOR, "button.fork-here").click()
    wait(browser).until(lambda d: d.execute_script("return location.hash") != f"#/runs/{source}")
    fork = browser.execute_script("return location.hash").split("/", 2)[2]
    assert fork.startswith(f"{source}-fork-")
    css(browser, "#timeline tr.type-fork")
    css(browser, ".thread-head .status-awaiting-approval")
    shown = browser.execute_script(
        "return [...document.querySelectorAll('#timeline tr.event')].map(r => r.dataset.seq)"
    )
    assert [int(seq) for seq in shown] == list(range(1, gate_seq + 3))

    browser.get(f"{app.url}/#/approvals")
    [fork_approval] = [a["id"] for a in api_get(app, "/api/approvals") if a["threadId"] == fork]
    assert fork_approval != source_approval
    card = css(browser, f".approval-card[data-approval-id='{fork_approval}']")
    css(browser, f".approval-card[data-approval-id='{source_approval}']")
    card.find_element(By.CSS_SELECTOR, "button.approve").click()
    css(browser, ".decided-row .status-approve")

    browser.get(f"{app.url}/#/runs/{fork}")
    css(browser, "#timeline tr.type-finish")
    css(browser, ".thread-head .status-finished")
    # The source still waits at its gate, with its approval pending and its log unchanged.
    pending = {a["id"]: a["threadId"] for a in api_get(app, "/api/approvals")}
    assert pending == {source_approval: source}
    thread = api_get(app, f"/api/threads/{source}")
    assert (thread["status"], thread["lastSeq"]) == ("awaiting-approval", gate_seq)


EVALS = "examples.acme.evals:SUITES"


def run_suite(driver: Any, app: Studio, suite: str) -> str:
    """Runs ``suite`` from the Evals page and waits for its end; returns the run id."""
    driver.get(f"{app.url}/#/evals")
    select = Select(css(driver, "select[name=suite]"))
    wait(driver).until(lambda _: len(select.options) > 0)
    select.select_by_value(suite)
    driver.find_element(By.CSS_SELECTOR, "#run-eval").click()
    css(driver, "#eval-state[data-state=completed]")
    return str(driver.current_url.rsplit("/", 1)[-1])


def bars(driver: Any) -> dict[tuple[str, str], float]:
    """The chart's bars: (test case, series) -> value."""
    found = driver.find_elements(By.CSS_SELECTOR, "#eval-chart svg rect[data-series]")
    return {
        (b.get_attribute("data-case"), b.get_attribute("data-series")): float(
            b.get_attribute("data-value")
        )
        for b in found
    }


def test_an_eval_run_draws_its_chart_opens_a_failing_sample_and_compares_with_another(
    browser: Any, studio: Callable[..., Studio], shoot: Callable[[Any, str], None]
) -> None:
    app = studio("--app", ACME, "--evals", EVALS)
    first = run_suite(browser, app, "inventory")

    # The chart is drawn from the finished test cases: 'summary' always passes, 'low-stock'
    # (which expects a tool the analyst does not call) never does.
    wait(browser).until(lambda d: css(d, "#eval-chart").get_attribute("data-cases") == "2")
    assert bars(browser) == {
        ("summary", "pass rate"): 1.0,
        ("summary", "pass@1"): 1.0,
        ("summary", "pass@3"): 1.0,
        ("low-stock", "pass rate"): 0.0,
        ("low-stock", "pass@1"): 0.0,
        ("low-stock", "pass@3"): 0.0,
    }
    assert css(browser, "#eval-verdict").text == "FAIL"
    assert css(browser, "#eval-progress").get_attribute("value") == "6"
    shoot(browser, "evals")

    # The failing samples come first; each opens the thread it ran on in the Runs timeline.
    failing = css(browser, "#eval-samples tr.sample.fail")
    assert failing.get_attribute("data-case") == "low-stock"
    thread_id = failing.get_attribute("data-thread-id")
    failing.find_element(By.CSS_SELECTOR, "a.open-thread").click()
    css(browser, "#timeline tr.type-finish")
    assert browser.current_url.endswith(f"#/runs/{thread_id}")
    calls = browser.find_elements(By.CSS_SELECTOR, "#timeline tr.type-tool-invocation")
    assert calls
    assert "inventory_summary" in calls[0].text

    second = run_suite(browser, app, "inventory-fixed")
    browser.get(f"{app.url}/#/evals")
    css(browser, f"#eval-runs tr[data-run-id='{second}']")
    Select(css(browser, "select[name=compare-a]")).select_by_value(first)
    Select(css(browser, "select[name=compare-b]")).select_by_value(second)
    browser.find_element(By.CSS_SELECTOR, "#compare").click()
    fixed = css(browser, "#eval-compare tr[data-case=low-stock]")
    assert fixed.get_attribute("data-delta") == "1"
    assert "better" in fixed.get_attribute("class")
    same = css(browser, "#eval-compare tr[data-case=summary]")
    assert same.get_attribute("data-delta") == "0"
    shoot(browser, "evals-compare")
