"""The approvals service's HTTP API from the caller's side: request signing and a small client.

Owns the chat-ops request signature (Slack-style): a signed request carries
``X-Flowai-Request-Timestamp`` (Unix seconds) and ``X-Flowai-Signature: v0=<hex>``, the
HMAC-SHA256 with the shared secret of ``v0:{timestamp}:{raw body}``. :func:`sign` makes the
headers, :func:`verify` checks them (constant-time comparison; older or newer than five
minutes is refused, so a captured request cannot be replayed later); the approvals service
and its callers use these two, so the format is written once.

:func:`decide` and :func:`pending` call the API (``POST
/v1/tenants/{tenant}/approvals/{id}/decision`` and ``GET /v1/tenants/{tenant}/approvals``)
for bots and tests. An error answer is raised as the typed error its ``code`` names
(``UNKNOWN_APPROVAL`` -> :class:`~flowai_harness.errors.UnknownApprovalError`, ...).

Imports aiohttp (the ``kafka`` extra) only inside the client functions. Must not import the
runtime, the native engine, the bus or any service.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import quote

import orjson

from .errors import FlowaiError, SignatureError, error_from_code

if TYPE_CHECKING:
    import aiohttp

__all__ = [
    "MAX_AGE_S",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "decide",
    "decision_path",
    "pending",
    "sign",
    "signature",
    "verify",
]

SIGNATURE_HEADER: Final = "X-Flowai-Signature"
TIMESTAMP_HEADER: Final = "X-Flowai-Request-Timestamp"
VERSION: Final = "v0"
# How far a signed request's timestamp may be from the receiver's clock, either way.
MAX_AGE_S: Final = 5 * 60

Outcome = Literal["approve", "reject", "revise"]


def _key(secret: str | bytes) -> bytes:
    key = secret.encode() if isinstance(secret, str) else secret
    if not key:
        raise ValueError("the signing secret must not be empty")
    return key


def signature(secret: str | bytes, timestamp: str | int, body: bytes) -> str:
    """``v0=<hex HMAC-SHA256 of "v0:{timestamp}:{body}">``."""
    base = f"{VERSION}:{timestamp}:".encode() + body
    return f"{VERSION}=" + hmac.new(_key(secret), base, hashlib.sha256).hexdigest()


def sign(secret: str | bytes, timestamp: int | None, body: bytes) -> dict[str, str]:
    """The headers that sign ``body`` (``timestamp``: Unix seconds, default now)."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return {TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: signature(secret, stamp, body)}


def verify(
    secret: str | bytes,
    timestamp: str | None,
    given: str | None,
    body: bytes,
    *,
    now: float | None = None,
    max_age: float = MAX_AGE_S,
) -> None:
    """Check a request's signature headers; raises :class:`SignatureError` saying what is
    wrong (missing, malformed, stale, or not matching the body)."""
    if not timestamp or not given:
        raise SignatureError(
            f"the request is not signed: send {TIMESTAMP_HEADER} (Unix seconds) and "
            f"{SIGNATURE_HEADER} (v0=<hex HMAC-SHA256 of 'v0:{{timestamp}}:{{body}}'>)"
        )
    try:
        stamp = int(timestamp)
    except ValueError:
        raise SignatureError(
            f"{TIMESTAMP_HEADER} must be an integer of Unix seconds, got {timestamp[:40]!r}"
        ) from None
    clock = time.time() if now is None else now
    if abs(clock - stamp) > max_age:
        raise SignatureError(
            f"the request timestamp {stamp} is more than {max_age:g} s from now; sign each "
            "request when it is sent (and keep the clocks in sync)"
        )
    expected = signature(secret, timestamp, body)
    if not hmac.compare_digest(expected.encode(), given.encode()):
        raise SignatureError(
            "the request signature does not match its body; sign the exact bytes sent with "
            "the shared secret"
        )


def decision_path(tenant: str, approval_id: str) -> str:
    """``/v1/tenants/{tenant}/approvals/{id}/decision``, each part percent-encoded
    (approval ids contain ``/`` and ``:``)."""
    return f"/v1/tenants/{quote(tenant, safe='')}/approvals/{quote(approval_id, safe='')}/decision"


async def decide(
    base_url: str,
    tenant: str,
    approval_id: str,
    outcome: Outcome,
    *,
    approver: str,
    feedback: str | None = None,
    partial: Any = None,
    secret: str | bytes | None = None,
    session: aiohttp.ClientSession | None = None,
) -> dict[str, Any]:
    """Decide an approval through the approvals service; returns the decision it published.

    ``secret`` signs the request (needed when the service has a signing secret); ``session``
    reuses an aiohttp session (else one is opened for the call; bound the wait with
    ``asyncio.timeout`` around the call). Raises the
    typed error the service answers with: :class:`~flowai_harness.errors.UnknownApprovalError`
    (404), :class:`~flowai_harness.errors.ApprovalAlreadyResolvedError` (409, the earlier
    decision in ``details``), :class:`~flowai_harness.errors.ApprovalExpiredError` (409),
    :class:`~flowai_harness.errors.ApproverNotAllowedError` (403),
    :class:`~flowai_harness.errors.SignatureError` (401),
    :class:`~flowai_harness.errors.InvalidInputError` (400).
    """
    document: dict[str, Any] = {"outcome": outcome, "approver": approver}
    if feedback is not None:
        document["feedback"] = feedback
    if partial is not None:
        document["partial"] = partial
    body = orjson.dumps(document)
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers.update(sign(secret, None, body))
    url = base_url.rstrip("/") + decision_path(tenant, approval_id)
    return await _call("POST", url, body, headers, session)


async def pending(
    base_url: str,
    tenant: str,
    *,
    session: aiohttp.ClientSession | None = None,
) -> list[dict[str, Any]]:
    """The tenant's approvals still waiting for a decision (expired ones marked)."""
    url = f"{base_url.rstrip('/')}/v1/tenants/{quote(tenant, safe='')}/approvals"
    answer = await _call("GET", url, None, {}, session)
    approvals: list[dict[str, Any]] = answer["approvals"]
    return approvals


async def _call(
    method: str,
    url: str,
    body: bytes | None,
    headers: Mapping[str, str],
    session: aiohttp.ClientSession | None,
) -> dict[str, Any]:
    import aiohttp  # the kafka extra

    own = session is None
    client = aiohttp.ClientSession() if session is None else session
    try:
        async with client.request(method, url, data=body, headers=dict(headers)) as response:
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
