"""The approvals HTTP API (aiohttp): humans, operators and chat-ops bots list and decide
approvals; Slack delivers its clicks.

Owns :func:`create_app`. Routes (JSON in and out; approval ids contain ``/`` and ``:``, so
send them percent-encoded):

- ``GET /healthz``: 200 once the service has read the approval topics, else 503.
- ``GET /v1/tenants/{tenant}/approvals``: ``{"tenant", "approvals": [...]}``, the tenant's
  approvals waiting for a decision, oldest first, each with ``status`` ``pending`` or
  ``expired``.
- ``GET /v1/tenants/{tenant}/approvals/{id}``: one approval, with its ``status``
  (``pending``, ``expired``, ``decided``, ``cancelled``) and ``decision``.
- ``POST /v1/tenants/{tenant}/approvals/{id}/decision`` with ``{"outcome": "approve" |
  "reject" | "revise", "approver", "feedback"?, "partial"?}``: 202 with the published
  decision.
- ``POST /slack/events``: Slack's interactive callbacks (when Slack is configured), checked
  with Slack's signature (:mod:`.slack`).

Every ``/v1/tenants/{tenant}/...`` request, reads included, must be signed with that
tenant's secret (:func:`flowai_harness.kafka.approvals_http.sign_request`: method, path and
body), checked before anything else, so nothing about a tenant's approvals is told to a
caller without its credentials. A tenant without a secret is refused, unless the service
runs with ``--allow-unauthenticated`` (development).

Errors are ``{"error": {"code", "message"}}`` (plus ``decision`` for a 409 on a decided
approval): 400 bad body, 401 bad or missing signature, 403 approver not allowed, 404 unknown
id (another tenant's id reads the same), 409 already decided, expired or cancelled, 503 not
ready or Kafka unavailable.

Must not import Kafka, Redis, Slack or another service.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, Protocol

import orjson
from aiohttp import web

from flowai_harness.errors import (
    ApprovalAlreadyResolvedError,
    ApproverNotAllowedError,
    BusError,
    FlowaiError,
    InvalidInputError,
    NotFoundError,
    SignatureError,
)
from flowai_harness.kafka.approvals_http import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    approval_path,
    approvals_path,
    decision_path,
    verify_request,
)

from .desk import ApprovalDesk, parse_decision

__all__ = ["DESK", "SLACK", "Interactions", "create_app"]

log = logging.getLogger("flowai.approvals")


class Interactions(Protocol):
    """What answers Slack's requests (:class:`~.slack.SlackBridge`)."""

    async def interact(
        self, raw: bytes, headers: Mapping[str, str]
    ) -> tuple[int, dict[str, Any] | None]: ...


DESK: Final = web.AppKey("desk", ApprovalDesk)
SLACK: Final = web.AppKey("slack", Interactions)

# Most specific first: ApprovalExpiredError is an ApprovalAlreadyResolvedError.
_STATUS: Final[tuple[tuple[type[FlowaiError], int], ...]] = (
    (InvalidInputError, 400),
    (SignatureError, 401),
    (ApproverNotAllowedError, 403),
    (NotFoundError, 404),
    (ApprovalAlreadyResolvedError, 409),
    (BusError, 503),
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(desk: ApprovalDesk, slack: Interactions | None = None) -> web.Application:
    """The aiohttp application serving ``desk`` (and Slack's callbacks, given ``slack``)."""
    app = web.Application(middlewares=[_errors])
    app[DESK] = desk
    app.router.add_get("/healthz", _health)
    app.router.add_get("/v1/tenants/{tenant}/approvals", _list)
    # `.+`: an approval id has slashes in it (percent-encoded on the way in, but decoded
    # before routing).
    app.router.add_post("/v1/tenants/{tenant}/approvals/{approval_id:.+}/decision", _decide)
    app.router.add_get("/v1/tenants/{tenant}/approvals/{approval_id:.+}", _get)
    if slack is not None:
        app[SLACK] = slack
        app.router.add_post("/slack/events", _slack)
    return app


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except FlowaiError as exc:
        status = next((code for cls, code in _STATUS if isinstance(exc, cls)), 500)
        if status >= 500 or status == 401:
            log.warning("%s %s: %s", request.method, request.path, exc)
        return _json({"error": {"code": exc.code, "message": exc.message}, **exc.details}, status)


async def _authorised(request: web.Request, tenant: str, path: str, body: bytes = b"") -> None:
    """Refuse the request unless it is signed with one of ``tenant``'s secrets."""
    policy = request.app[DESK].policy
    secrets = await policy.secrets.of(tenant)
    if not secrets:
        if policy.allow_unauthenticated:
            return
        raise SignatureError(
            f"tenant {tenant!r} has no API secret on this service, so its approvals cannot "
            "be read or decided over HTTP; give it one (--tenant-secrets file or the app's "
            "tenant_secrets)"
        )
    verify_request(
        secrets,
        request.headers.get(TIMESTAMP_HEADER),
        request.headers.get(SIGNATURE_HEADER),
        request.method,
        path,
        body,
    )


async def _health(request: web.Request) -> web.Response:
    ready = request.app[DESK].ready
    return _json({"ready": ready}, 200 if ready else 503)


async def _list(request: web.Request) -> web.Response:
    tenant = request.match_info["tenant"]
    await _authorised(request, tenant, approvals_path(tenant))
    return _json({"tenant": tenant, "approvals": request.app[DESK].listing(tenant)})


async def _get(request: web.Request) -> web.Response:
    desk = request.app[DESK]
    tenant, approval_id = request.match_info["tenant"], request.match_info["approval_id"]
    await _authorised(request, tenant, approval_path(tenant, approval_id))
    approval = await desk.lookup(tenant, approval_id)
    return _json(approval.view(desk.clock()))


async def _decide(request: web.Request) -> web.Response:
    desk = request.app[DESK]
    tenant, approval_id = request.match_info["tenant"], request.match_info["approval_id"]
    raw = await request.read()
    await _authorised(request, tenant, decision_path(tenant, approval_id), raw)
    decision = await desk.decide(tenant, approval_id, parse_decision(raw))
    return _json(decision, 202)


async def _slack(request: web.Request) -> web.Response:
    raw = await request.read()
    status, body = await request.app[SLACK].interact(raw, request.headers)
    if body is None:
        return web.Response(status=status)
    return _json(body, status)
