"""The approvals service's HTTP API from the caller's side: request signatures and a client.

Owns the two request signatures the approvals service checks, written once for both sides:

- **Tenant requests** (every ``/v1/tenants/{tenant}/...`` call, reads included): the caller
  holds the tenant's secret and sends ``X-Flowai-Request-Timestamp`` (Unix seconds) and
  ``X-Flowai-Signature: v1=<hex>``, the HMAC-SHA256 of
  ``v1:{timestamp}:{METHOD}:{path}:{raw body}``. The path names the tenant and the
  approval, so a captured request cannot be moved to another approval or tenant; the
  timestamp bounds a replay to five minutes (and an approval takes one decision per
  approver). :func:`sign_request` makes the headers, :func:`verify_request` checks them.
  The path signed is the canonical one (:func:`approvals_path`, :func:`approval_path`,
  :func:`decision_path`: each part percent-encoded with nothing left safe), which the server
  rebuilds from the decoded route, so both sides agree however a proxy re-encodes it.
- **Slack's own scheme** for its interactive callbacks: ``X-Slack-Request-Timestamp`` and
  ``X-Slack-Signature: v0=<hex HMAC-SHA256 of "v0:{timestamp}:{raw body}">`` with the Slack
  app's signing secret (:func:`slack_signature`, :func:`verify_slack`).

Both refuse a timestamp more than five minutes from the receiver's clock and compare in
constant time; a refusal is a :class:`~flowai_harness.errors.SignatureError` saying what is
wrong.

:func:`pending`, :func:`show` and :func:`decide` call the API for bots, operators (``flowai
approvals``) and tests. An error answer is raised as the typed error its ``code`` names
(``UNKNOWN_APPROVAL`` -> :class:`~flowai_harness.errors.UnknownApprovalError`, ...).

Imports aiohttp (the ``kafka`` extra) only inside the client functions. Must not import the
runtime, the native engine, the bus or any service.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import quote

import orjson

from ..errors import FlowaiError, SignatureError, error_from_code

if TYPE_CHECKING:
    import aiohttp

__all__ = [
    "MAX_AGE_S",
    "SIGNATURE_HEADER",
    "SLACK_SIGNATURE_HEADER",
    "SLACK_TIMESTAMP_HEADER",
    "TIMESTAMP_HEADER",
    "approval_path",
    "approvals_path",
    "decide",
    "decision_path",
    "pending",
    "request_signature",
    "show",
    "sign_request",
    "slack_signature",
    "verify_request",
    "verify_slack",
]

SIGNATURE_HEADER: Final = "X-Flowai-Signature"
TIMESTAMP_HEADER: Final = "X-Flowai-Request-Timestamp"
SLACK_SIGNATURE_HEADER: Final = "X-Slack-Signature"
SLACK_TIMESTAMP_HEADER: Final = "X-Slack-Request-Timestamp"
# v0 was the body-only form this service used before; it is Slack's, and only Slack's, now.
REQUEST_VERSION: Final = "v1"
SLACK_VERSION: Final = "v0"
# How far a signed request's timestamp may be from the receiver's clock, either way.
MAX_AGE_S: Final = 5 * 60

Outcome = Literal["approve", "reject", "revise"]
Secret = str | bytes


def _key(secret: Secret) -> bytes:
    key = secret.encode() if isinstance(secret, str) else secret
    if not key:
        raise ValueError("a signing secret must not be empty")
    return key


def _hmac(secret: Secret, base: bytes) -> str:
    return hmac.new(_key(secret), base, hashlib.sha256).hexdigest()


# --- paths -----------------------------------------------------------------------------------


def approvals_path(tenant: str) -> str:
    """``/v1/tenants/{tenant}/approvals``."""
    return f"/v1/tenants/{quote(tenant, safe='')}/approvals"


def approval_path(tenant: str, approval_id: str) -> str:
    """``/v1/tenants/{tenant}/approvals/{id}`` (approval ids contain ``/`` and ``:``)."""
    return f"{approvals_path(tenant)}/{quote(approval_id, safe='')}"


def decision_path(tenant: str, approval_id: str) -> str:
    """``/v1/tenants/{tenant}/approvals/{id}/decision``."""
    return approval_path(tenant, approval_id) + "/decision"


# --- tenant requests -------------------------------------------------------------------------


def request_signature(
    secret: Secret, timestamp: str | int, method: str, path: str, body: bytes
) -> str:
    """``v1=<hex HMAC-SHA256 of "v1:{timestamp}:{METHOD}:{path}:{body}">``."""
    base = f"{REQUEST_VERSION}:{timestamp}:{method.upper()}:{path}:".encode() + body
    return f"{REQUEST_VERSION}=" + _hmac(secret, base)


def sign_request(
    secret: Secret, method: str, path: str, body: bytes = b"", *, timestamp: int | None = None
) -> dict[str, str]:
    """The headers that sign a request (``timestamp``: Unix seconds, default now)."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return {
        TIMESTAMP_HEADER: stamp,
        SIGNATURE_HEADER: request_signature(secret, stamp, method, path, body),
    }


def verify_request(
    secrets: Iterable[Secret],
    timestamp: str | None,
    given: str | None,
    method: str,
    path: str,
    body: bytes,
    *,
    now: float | None = None,
    max_age: float = MAX_AGE_S,
) -> None:
    """Check a tenant request's signature against the tenant's secrets (more than one while
    a secret is rotated); raises :class:`SignatureError` saying what is wrong."""
    how = (
        f"send {TIMESTAMP_HEADER} (Unix seconds) and {SIGNATURE_HEADER} (v1=<hex HMAC-SHA256 "
        "with the tenant's secret of 'v1:{timestamp}:{METHOD}:{path}:{body}'>)"
    )
    stamp = _fresh(timestamp, given, TIMESTAMP_HEADER, how, now, max_age)
    assert given is not None
    for secret in secrets:
        expected = request_signature(secret, stamp, method, path, body)
        if hmac.compare_digest(expected.encode(), given.encode()):
            return
    raise SignatureError(
        "the request signature does not match: sign the method, the exact path (each part "
        "percent-encoded) and the exact body bytes with this tenant's secret"
    )


# --- Slack's scheme --------------------------------------------------------------------------


def slack_signature(secret: Secret, timestamp: str | int, body: bytes) -> str:
    """Slack's ``v0=<hex HMAC-SHA256 of "v0:{timestamp}:{body}">``."""
    return f"{SLACK_VERSION}=" + _hmac(secret, f"{SLACK_VERSION}:{timestamp}:".encode() + body)


def verify_slack(
    secret: Secret,
    timestamp: str | None,
    given: str | None,
    body: bytes,
    *,
    now: float | None = None,
    max_age: float = MAX_AGE_S,
) -> None:
    """Check a request from Slack (its interactive callbacks) with the app's signing secret;
    raises :class:`SignatureError` saying what is wrong."""
    how = f"Slack sends {SLACK_TIMESTAMP_HEADER} and {SLACK_SIGNATURE_HEADER}"
    stamp = _fresh(timestamp, given, SLACK_TIMESTAMP_HEADER, how, now, max_age)
    assert given is not None
    if not hmac.compare_digest(slack_signature(secret, stamp, body).encode(), given.encode()):
        raise SignatureError(
            "the Slack signature does not match the body: check SLACK_SIGNING_SECRET (the "
            "app's Basic Information page) and that nothing rewrites the body on the way"
        )


def _fresh(
    timestamp: str | None,
    given: str | None,
    header: str,
    how: str,
    now: float | None,
    max_age: float,
) -> str:
    if not timestamp or not given:
        raise SignatureError(f"the request is not signed: {how}")
    try:
        stamp = int(timestamp)
    except ValueError:
        raise SignatureError(
            f"{header} must be an integer of Unix seconds, got {timestamp[:40]!r}"
        ) from None
    clock = time.time() if now is None else now
    if abs(clock - stamp) > max_age:
        raise SignatureError(
            f"the request timestamp {stamp} is more than {max_age:g} s from now; sign each "
            "request when it is sent (and keep the clocks in sync)"
        )
    return timestamp


# --- the client ------------------------------------------------------------------------------


async def decide(
    base_url: str,
    tenant: str,
    approval_id: str,
    outcome: Outcome,
    *,
    approver: str,
    feedback: str | None = None,
    partial: Any = None,
    secret: Secret | None = None,
    session: aiohttp.ClientSession | None = None,
) -> dict[str, Any]:
    """Decide an approval through the approvals service; returns the decision it published
    (``confirmed``: read back from the topic, and it counted).

    ``secret`` is the tenant's (the service refuses unsigned requests unless it runs with
    ``--allow-unauthenticated``); ``session`` reuses an aiohttp session (else one is opened
    for the call; bound the wait with ``asyncio.timeout`` around the call). Raises the typed
    error the service answers with: :class:`~flowai_harness.errors.UnknownApprovalError`
    (404), :class:`~flowai_harness.errors.ApprovalAlreadyResolvedError` (409, the earlier
    decision in ``details``), :class:`~flowai_harness.errors.ApprovalExpiredError` (409),
    :class:`~flowai_harness.errors.ApproverNotAllowedError` (403),
    :class:`~flowai_harness.errors.SignatureError` (401),
    :class:`~flowai_harness.errors.InvalidInputError` (400),
    :class:`~flowai_harness.errors.BusError` (503).
    """
    document: dict[str, Any] = {"outcome": outcome, "approver": approver}
    if feedback is not None:
        document["feedback"] = feedback
    if partial is not None:
        document["partial"] = partial
    body = orjson.dumps(document)
    path = decision_path(tenant, approval_id)
    return await _call("POST", base_url, path, body, secret, session)


async def pending(
    base_url: str,
    tenant: str,
    *,
    secret: Secret | None = None,
    session: aiohttp.ClientSession | None = None,
) -> list[dict[str, Any]]:
    """The tenant's approvals still waiting for a decision (expired ones marked)."""
    answer = await _call("GET", base_url, approvals_path(tenant), b"", secret, session)
    approvals: list[dict[str, Any]] = answer["approvals"]
    return approvals


async def show(
    base_url: str,
    tenant: str,
    approval_id: str,
    *,
    secret: Secret | None = None,
    session: aiohttp.ClientSession | None = None,
) -> dict[str, Any]:
    """One approval of the tenant, decided or not."""
    return await _call("GET", base_url, approval_path(tenant, approval_id), b"", secret, session)


async def _call(
    method: str,
    base_url: str,
    path: str,
    body: bytes,
    secret: Secret | None,
    session: aiohttp.ClientSession | None,
) -> dict[str, Any]:
    import aiohttp  # the kafka extra
    import yarl  # aiohttp's URL type

    headers = {"Content-Type": "application/json"} if body else {}
    if secret is not None:
        headers.update(sign_request(secret, method, path, body))
    url = base_url.rstrip("/") + path
    own = session is None
    client = aiohttp.ClientSession() if session is None else session
    try:
        # The path is sent as signed: already percent-encoded, not to be encoded again.
        target = yarl.URL(url, encoded=True)
        async with client.request(
            method, target, data=body if body else None, headers=headers
        ) as response:
            raw = await response.read()
            status = response.status
    finally:
        if own:
            await client.close()
    try:
        answer = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        answer = {}
    if status < 400 and isinstance(answer, dict):
        return answer
    error = answer.get("error") if isinstance(answer, dict) else None
    if isinstance(error, dict) and isinstance(error.get("code"), str):
        raise _typed(error, answer)
    raise FlowaiError(
        f"{method} {url} answered {status}: {raw[:200].decode(errors='replace')}",
        code="HTTP_ERROR",
    )


def _typed(error: Mapping[str, Any], answer: Mapping[str, Any]) -> FlowaiError:
    exc = error_from_code(str(error["code"]), str(error.get("message", "")))
    # The earlier decision of a 409, and anything else the service said, for the caller.
    exc.details = {**exc.details, **{k: v for k, v in answer.items() if k != "error"}}
    return exc
