"""What the approvals-service tests share: messages as the runtime publishes them, a desk
wired to an in-process stand-in for the decisions topic, and signed HTTP calls.

:class:`Topic` stands in for ``approval-decisions``: what a desk publishes is appended and
delivered, in publish order, to every desk that reads it, as each instance's consumer
would read it back. The tests of the whole service on the real Kafka are in
test_approvals_service.py (``connected``) and tests/connected.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import yarl
from aiohttp import test_utils
from services.approvals.desk import ApprovalDesk
from services.approvals.http import Interactions, create_app
from services.approvals.policy import AppPolicy, ApproverPolicy, SlackRoutes, TenantSecrets

from flowai_harness.kafka import approvals_http, bus
from flowai_harness.kafka.decision_auth import DecisionSigner, DecisionVerifier, generate_keys

TOPICS = bus.Topics("unit")
NOW = 1_700_000_000_000
SECRETS = {
    "acme": "acme-secret-0123456789abcdef",
    "globex": "globex-secret-0123456789abcdef",
}
PRIVATE_PEM, PUBLIC_PEM = generate_keys()
SIGNER = DecisionSigner.from_pem(PRIVATE_PEM)
VERIFIER = DecisionVerifier.from_pems([PUBLIC_PEM])

Client = test_utils.TestClient[Any, Any]


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> int:
        return self.now


@dataclass
class Topic:
    """Stands in for the decisions topic (and the producer that writes it)."""

    readers: list[ApprovalDesk] = field(default_factory=list)
    sent: list[tuple[str, bytes | None, bytes]] = field(default_factory=list)
    fail_next: int = 0
    # False: keep what is published from the readers (a consumer that lags).
    deliver: bool = True

    async def publish(
        self, topic: str, key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes]]
    ) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("broker unreachable (test)")
        self.sent.append((topic, key, value))
        if self.deliver:
            for desk in self.readers:
                # What a desk publishes is a decision; read back, it folds as one.
                desk.on_approval_decision(value)

    def decisions(self) -> list[dict[str, Any]]:
        return [orjson.loads(value) for topic, _, value in self.sent]


def approval_request(
    tenant: str = "acme",
    thread: str = "thread-1",
    call: str = "scripted-tool-2",
    *,
    expires_at: int | None = None,
    kind: str = "plan",
    ts: int = NOW - 1000,
    **extra: Any,
) -> bytes:
    """An ApprovalRequest as the engine emits it (its envelope id is the approval id)."""
    approval_id = f"appr:{thread}/run-1/{call}"
    return orjson.dumps(
        {
            "schema": "flowai.v1.ApprovalRequest",
            "id": approval_id,
            "tenant": tenant,
            "thread_id": thread,
            "run_id": "run-1",
            "causation_id": f"{tenant}/{thread}/9",
            "ts": ts,
            "payload": {
                "type": "approval-required",
                "id": approval_id,
                "kind": kind,
                "target": "p1" if kind == "plan" else "delete_rows",
                "payload": {"planId": "p1", "actions": [{"kind": "reorder"}]},
                "resourceId": tenant,
                "threadId": thread,
                "correlationId": call,
                "expiresAt": expires_at,
                "agent": "planner",
                **extra,
            },
        }
    )


def approval_decision(
    approval_id: str,
    outcome: str = "reject",
    approver: str = "bot",
    tenant: str = "acme",
    thread: str = "thread-1",
    *,
    signer: DecisionSigner | None = SIGNER,
) -> bytes:
    """A decision published straight to the topic (an operator's tool), signed by default."""
    envelope: dict[str, Any] = {
        "schema": "flowai.v1.ApprovalDecision",
        "id": f"direct-{uuid.uuid4().hex[:8]}",
        "tenant": tenant,
        "thread_id": thread,
        "run_id": None,
        "causation_id": None,
        "ts": NOW,
        "payload": {"approval_id": approval_id, "outcome": outcome, "approver": approver},
    }
    return orjson.dumps(envelope if signer is None else signer.signed(envelope))


def id_of(request: bytes) -> str:
    approval_id: str = orjson.loads(request)["id"]
    return approval_id


def make_desk(
    *,
    approvers: object = None,
    secrets: Mapping[str, str] | None = None,
    allow_unauthenticated: bool = False,
    clock: Callable[[], int] | None = None,
    topic: Topic | None = None,
    signer: DecisionSigner | None = SIGNER,
    verifier: DecisionVerifier | None = VERIFIER,
    slack_routes: SlackRoutes | None = None,
) -> tuple[ApprovalDesk, Topic]:
    """A desk reading (and publishing to) ``topic`` (a new one by default)."""
    table = {
        tenant: (secret.encode(),)
        for tenant, secret in (SECRETS if secrets is None else secrets).items()
    }
    policy = AppPolicy(
        approvers=ApproverPolicy.from_app(approvers),
        secrets=TenantSecrets(table),
        allow_unauthenticated=allow_unauthenticated,
        slack_routes=slack_routes or SlackRoutes(),
    )
    shared = topic or Topic()
    desk = ApprovalDesk(
        policy,
        shared,
        TOPICS,
        signer=signer,
        verifier=verifier,
        clock=clock or Clock(),
    )
    shared.readers.append(desk)
    return desk, shared


@contextlib.asynccontextmanager
async def serving(desk: ApprovalDesk, slack: Interactions | None = None) -> AsyncIterator[Client]:
    async with test_utils.TestClient(test_utils.TestServer(create_app(desk, slack))) as client:
        yield client


def url(tenant: str, approval_id: str | None = None, *, decision: bool = False) -> str:
    if approval_id is None:
        return approvals_http.approvals_path(tenant)
    if decision:
        return approvals_http.decision_path(tenant, approval_id)
    return approvals_http.approval_path(tenant, approval_id)


def signed(
    method: str, path: str, body: bytes = b"", *, tenant: str = "acme", **options: Any
) -> dict[str, str]:
    secret = options.pop("secret", SECRETS.get(tenant, "unknown-tenant-secret-000"))
    return approvals_http.sign_request(secret, method, path, body, **options)


async def post(
    client: Client,
    path: str,
    body: Any,
    headers: Mapping[str, str] | None = None,
    *,
    tenant: str | None = None,
) -> tuple[int, dict[str, Any]]:
    """POST ``body``; signed with the path's tenant's secret unless ``headers`` are given."""
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    if headers is None:
        headers = signed("POST", path, raw, tenant=tenant or path.split("/")[3])
    response = await client.post(_encoded(path), data=raw, headers=dict(headers))
    return response.status, orjson.loads(await response.read())


async def get(
    client: Client,
    path: str,
    headers: Mapping[str, str] | None = None,
    *,
    tenant: str | None = None,
) -> tuple[int, dict[str, Any]]:
    if headers is None and path.startswith("/v1/"):
        headers = signed("GET", path, tenant=tenant or path.split("/")[3])
    response = await client.get(_encoded(path), headers=dict(headers or {}))
    return response.status, orjson.loads(await response.read())


def _encoded(path: str) -> yarl.URL:
    # Sent as signed: the approval id stays percent-encoded.
    return yarl.URL(path, encoded=True)
