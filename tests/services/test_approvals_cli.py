"""``flowai approvals list|show|decide``: the operator's command line, run as a process against
the approvals HTTP app served in this process, with the tenant's secret, so the service
authorises it as any caller."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import orjson
import pytest
from approvals_helpers import SECRETS, approval_request, id_of, make_desk, serving

REPO = Path(__file__).resolve().parents[2]


async def flowai(*args: str, secret: str | None = SECRETS["acme"]) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if k != "FLOWAI_APPROVALS_SECRET"}
    if secret is not None:
        env["FLOWAI_APPROVALS_SECRET"] = secret
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "flowai_harness.cli",
        "approvals",
        *args,
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_an_operator_lists_shows_and_decides(tmp_path: Path) -> None:
    desk, topic = make_desk(approvers={"acme": {"alice", "bob"}})
    request = approval_request(kind="tool", expires_at=1_900_000_000_000, approvalsRequired=2)
    desk.on_approval_request(request)
    approval_id = id_of(request)
    secret_file = tmp_path / "acme.secret"
    secret_file.write_text(SECRETS["acme"] + "\n")

    async with serving(desk) as client:
        base = str(client.make_url("")).rstrip("/")
        common = ("--tenant", "acme", "--url", base)
        listed = await flowai("list", *common)
        shown = await flowai("show", approval_id, *common)
        decided = await flowai(
            "decide", approval_id, "approve", *common, "--approver", "alice", "--feedback", "ok"
        )
        from_file = await flowai(
            "decide",
            approval_id,
            "approve",
            *common,
            "--approver",
            "bob",
            "--secret-file",
            str(secret_file),
            "--json",
            secret=None,
        )
        again = await flowai("decide", approval_id, "reject", *common, "--approver", "alice")
        unsigned = await flowai("list", *common, secret=None)
        bad_partial = await flowai(
            "decide", approval_id, "revise", *common, "--approver", "bob", "--partial", "{x"
        )
        nobody = await flowai("decide", approval_id, "approve", *common)

    code, out, _ = listed
    assert code == 0
    assert out.strip() == (
        f"{approval_id}  pending  tool delete_rows  agent=planner  thread=thread-1  "
        "expires=2030-03-17T17:46:40+00:00  0/2"
    )
    code, out, _ = shown
    assert code == 0
    assert orjson.loads(out)["target"] == "delete_rows"
    code, out, _ = decided
    assert code == 0
    assert out.startswith("approve by alice published as decision/")
    code, out, _ = from_file
    assert code == 0
    assert orjson.loads(out)["approvals"] == ["alice", "bob"]
    code, _, err = again
    assert code == 2
    assert "APPROVAL_ALREADY_RESOLVED" in err
    code, _, err = unsigned
    assert code == 2
    assert "SIGNATURE_INVALID: the request is not signed" in err
    assert bad_partial[0] == 2
    assert "--partial must be JSON" in bad_partial[2]
    assert nobody[0] == 2
    assert "--approver is required" in nobody[2]
    assert [d["payload"]["approver"] for d in topic.decisions()] == ["alice", "bob"]


async def test_an_unreachable_service_is_exit_code_1() -> None:
    code, _, err = await flowai("list", "--tenant", "acme", "--url", "http://127.0.0.1:9")

    assert code == 1
    assert "cannot reach the approvals service at http://127.0.0.1:9" in err


@pytest.mark.parametrize("args", [["list"], ["decide", "x", "maybe", "--tenant", "acme"]])
async def test_usage_errors_are_exit_code_2(args: list[str]) -> None:
    code, _, err = await flowai(*args)

    assert code == 2
    assert "usage:" in err
