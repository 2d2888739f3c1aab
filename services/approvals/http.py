"""The approvals HTTP API (aiohttp): humans and chat-ops bots list and decide approvals.

Owns :func:`create_app`. Routes (JSON in and out; approval ids contain ``/`` and ``:``, so
send them percent-encoded):

- ``GET /healthz``: 200 once the service has read the approval topics, else 503.
- ``GET /v1/tenants/{tenant}/approvals``: ``{"tenant", "approvals": [...]}``, the tenant's
  approvals waiting for a decision, oldest first, each with ``status`` ``pending`` or
  ``expired``.
- ``GET /v1/tenants/{tenant}/approvals/{id}``: one approval, with its ``status``
  (``pending``, ``expired``, ``decided``) and ``decision``.
- ``POST /v1/tenants/{tenant}/approvals/{id}/decision`` with ``{"outcome": "approve" |
  "reject" | "revise", "approver", "feedback"?, "partial"?}``: 202 with the published
  decision. When the service has a signing secret the request must be signed
  (:mod:`flowai_harness.approvals_http`), checked before anything else.

Errors are ``{"error": {"code", "message"}}`` (plus ``decision`` for a 409 on a decided
approval): 400 bad body, 401 bad or missing signature, 403 approver not allowed, 404 unknown
id (another tenant's id reads the same), 409 already decided or expired, 503 not ready or
Kafka unavailable.

Must not import Kafka, Redis or another service.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

import orjson
from aiohttp import web

from flowai_harness.approvals_http import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from flowai_harness.errors import (
    ApprovalAlreadyResolvedError,
    ApproverNotAllowedError,
    BusError,
    FlowaiError,
    InvalidInputError,
    NotFoundError,
    SignatureError,
)

from .desk import ApprovalDesk, parse_decision

__all__ = ["DESK", "create_app"]

log = logging.getLogger("flowai.approvals")

DESK: Final = web.AppKey("desk", ApprovalDesk)

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


def create_app(desk: ApprovalDesk) -> web.Application:
    """The aiohttp application serving ``desk``."""
    app = web.Application(middlewares=[_errors])
    app[DESK] = desk
    app.router.add_get("/healthz", _health)
    app.router.add_get("/v1/tenants/{tenant}/approvals", _list)
    # `.+`: an approval id has slashes in it (percent-encoded on the way in, but decoded
    # before routing).
    app.router.add_post("/v1/tenants/{tenant}/approvals/{approval_id:.+}/decision", _decide)
    app.router.add_get("/v1/tenants/{tenant}/approvals/{approval_id:.+}", _get)
    return app


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except FlowaiError as exc:
        status = next((code for cls, code in _STATUS if isinstance(exc, cls)), 500)
        if status >= 500:
            log.warning("%s %s: %s", request.method, request.path, exc)
        return _json({"error": {"code": exc.code, "message": exc.message}, **exc.details}, status)


async def _health(request: web.Request) -> web.Response:
    desk = request.app[DESK]
    return _json({"ready": desk.ready, "approvals": len(desk.book)}, 200 if desk.ready else 503)


async def _list(request: web.Request) -> web.Response:
    tenant = request.match_info["tenant"]
    return _json({"tenant": tenant, "approvals": request.app[DESK].listing(tenant)})


async def _get(request: web.Request) -> web.Response:
    desk = request.app[DESK]
    approval = await desk.lookup(request.match_info["tenant"], request.match_info["approval_id"])
    return _json(approval.view(desk.clock()))


async def _decide(request: web.Request) -> web.Response:
    desk = request.app[DESK]
    raw = await request.read()
    secret = desk.policy.signing_secret
    if secret is not None:
        verify(
            secret,
            request.headers.get(TIMESTAMP_HEADER),
            request.headers.get(SIGNATURE_HEADER),
            raw,
        )
    decision = await desk.decide(
        request.match_info["tenant"], request.match_info["approval_id"], parse_decision(raw)
    )
    return _json(decision, 202)
