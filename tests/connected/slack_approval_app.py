"""The app of the approvals connected tests (``--app slack_approval_app:app``): the plan-approval
app, with Slack users among acme's approvers and its Slack channels routed.

acme's approvers are alice and bob (HTTP) and the Slack user ``U0ALICE01``; the clerk's
``delete_rows`` approvals go to ``#dba``, the rest of acme's to ``FLOWAI_SLACK_CHANNEL``.
``globex`` is a second tenant (its own API secret), so a request signed for acme can be
tried on it.
"""

from __future__ import annotations

from plan_approval_app import app as plan_app

from flowai_harness.specs import RuntimeSpec

SLACK_ALICE = "U0ALICE01"


def app() -> RuntimeSpec:
    return plan_app()


app.action_dispatcher = plan_app.action_dispatcher  # type: ignore[attr-defined]
app.approvers = {  # type: ignore[attr-defined]
    "acme": {"alice", "bob", f"slack:{SLACK_ALICE}"},
    "globex": {"alice"},
}
app.slack_channels = {"acme/clerk/delete_rows": "#dba"}  # type: ignore[attr-defined]
