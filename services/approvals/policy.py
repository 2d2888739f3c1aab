"""Who may decide, and how decision requests prove where they come from.

Owns :class:`ApproverPolicy`, :class:`AppPolicy` and :func:`load_policy`. The ``--app`` object
(the RuntimeSpec from ``define_runtime``, or the function returning it, as every service
loads it) may carry:

- ``approvers``: ``{tenant: names | check}``, where ``names`` is a set (or list, tuple) of
  approver names and ``check`` is ``fn(approver, approval) -> bool`` (sync or async;
  ``approval`` is the approval as the API shows it). The key ``"*"`` covers the tenants
  without an entry of their own. A tenant with neither may not be decided for. Without an
  ``approvers`` attribute any non-empty approver may decide. A check that raises refuses
  (fail closed).
- ``signing_secret``: the chat-ops signing secret (str or bytes); the environment variable
  ``FLOWAI_APPROVALS_SIGNING_SECRET`` overrides it (deployment settings beat code). With a
  secret, every decision request must be signed (see :mod:`flowai_harness.approvals_http`).

Must not import Kafka, Redis, aiohttp or the rest of the service.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Final

from flowai_harness.apps import import_object, load_spec
from flowai_harness.errors import AppLoadError

__all__ = ["SECRET_ENV", "AppPolicy", "ApproverPolicy", "load_policy"]

log = logging.getLogger("flowai.approvals")

SECRET_ENV: Final = "FLOWAI_APPROVALS_SIGNING_SECRET"
ANY_TENANT: Final = "*"

Check = Callable[[str, Mapping[str, Any]], Any]


class ApproverPolicy:
    """Whether an approver may decide one approval of a tenant."""

    __slots__ = ("_rules",)

    def __init__(self, rules: Mapping[str, frozenset[str] | Check] | None) -> None:
        self._rules = None if rules is None else dict(rules)

    @classmethod
    def from_app(cls, approvers: object, *, where: str = "approvers") -> ApproverPolicy:
        """Check the shape of an app's ``approvers`` attribute (None: no policy)."""
        if approvers is None:
            return cls(None)
        if not isinstance(approvers, Mapping):
            raise AppLoadError(
                f"{where} must be a mapping {{tenant: set of approver names | "
                f"fn(approver, approval) -> bool}}, got {type(approvers).__name__}"
            )
        rules: dict[str, frozenset[str] | Check] = {}
        for tenant, rule in approvers.items():
            if not isinstance(tenant, str) or not tenant:
                raise AppLoadError(
                    f"{where}: tenant keys must be non-empty strings, got {tenant!r}"
                )
            if callable(rule):
                rules[tenant] = rule
            elif (
                isinstance(rule, Collection)
                and not isinstance(rule, (str, bytes, Mapping))
                and all(isinstance(name, str) and name for name in rule)
            ):
                rules[tenant] = frozenset(rule)
            else:
                raise AppLoadError(
                    f"{where}[{tenant!r}] must be a set of approver names or a function "
                    f"fn(approver, approval) -> bool, got {rule!r}"
                )
        return cls(rules)

    async def allows(self, tenant: str, approver: str, approval: Mapping[str, Any]) -> bool:
        if not approver:
            return False
        if self._rules is None:
            return True
        rule = self._rules.get(tenant, self._rules.get(ANY_TENANT))
        if rule is None:
            return False
        if isinstance(rule, frozenset):
            return approver in rule
        try:
            allowed = rule(approver, approval)
            if inspect.isawaitable(allowed):
                allowed = await allowed
        except Exception:
            log.exception("the approvers check of tenant %r raised; refusing %r", tenant, approver)
            return False
        return allowed is True

    def describe(self, tenant: str) -> str:
        """Who may decide for ``tenant``, for error messages (names are not listed)."""
        if self._rules is None:
            return "any named approver"
        if tenant in self._rules or ANY_TENANT in self._rules:
            return "the approvers the service's policy allows for this tenant"
        return "nobody: the service's approvers policy has no entry for this tenant"


@dataclass(frozen=True)
class AppPolicy:
    """What the approvals service takes from the app."""

    approvers: ApproverPolicy
    signing_secret: bytes | None = None


def load_policy(app: str, *, environ: Mapping[str, str] | None = None) -> AppPolicy:
    """Load ``--app`` and read its ``approvers`` and ``signing_secret`` attributes."""
    env = os.environ if environ is None else environ
    spec = load_spec(app)
    # An attribute of the app object: the spec, or the function returning it (the import is
    # cached, so this finds the object load_spec did).
    target = import_object(app)
    approvers = getattr(target, "approvers", None)
    if approvers is None:
        approvers = getattr(spec, "approvers", None)
    secret: object = env.get(SECRET_ENV) or getattr(target, "signing_secret", None)
    if isinstance(secret, str):
        secret = secret.encode()
    if secret is not None and (not isinstance(secret, bytes) or not secret):
        raise AppLoadError(
            f"{app}: signing_secret must be a non-empty str or bytes, got {type(secret).__name__}"
        )
    return AppPolicy(
        approvers=ApproverPolicy.from_app(approvers, where=f"{app}: approvers"),
        signing_secret=secret,
    )
