"""Eval suites over the Acme example, for Studio's Evals page (``make studio``: ``--evals
examples.acme.evals:SUITES``).

Scripted: each test case's input is the tool script the analyst follows, so results are the
same on every run. ``inventory`` has a case that passes and one that fails (it expects a tool
the analyst does not call); ``inventory-fixed`` expects what the analyst does, so comparing
the two shows the fix.
"""

from __future__ import annotations

import json

from examples.acme.studio import runtime

from flowai_harness.evals import (
    EvalSuite,
    define_eval_config,
    define_eval_request,
    define_test_case,
)

SUMMARY = json.dumps({"tool": "inventory_summary", "args": {}})
CONFIG = define_eval_config(
    mode="specialist", target_agent_id="data_analyst", samples_per_case=3, k_values=[1, 3]
)


def _suite(name: str, low_stock_expects: str) -> EvalSuite:
    cases = [
        define_test_case("summary", SUMMARY, expected_trajectory=["inventory_summary"]),
        define_test_case("low-stock", SUMMARY, expected_trajectory=[low_stock_expects]),
    ]
    request = define_eval_request(
        workspace_id="studio", tenant_id="acme", test_cases=cases, config=CONFIG
    )
    # Studio runs the request on the runtime it serves; `runtime` is for `flowai eval run`.
    return EvalSuite(runtime=runtime, request=request, name=name)


SUITES = [
    _suite("inventory", "find_low_stock_products"),
    _suite("inventory-fixed", "inventory_summary"),
]
