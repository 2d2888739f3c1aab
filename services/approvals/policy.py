"""Who may decide, who may call the API for a tenant, and where Slack posts.

Owns :class:`ApproverPolicy`, :class:`TenantSecrets`, :class:`SlackRoutes`,
:class:`AppPolicy` and :func:`load_policy`. The ``--app`` object (the RuntimeSpec from
``define_runtime``, or the function returning it, as every service loads it) may carry:

- ``approvers``: ``{tenant: names | check}``, where ``names`` is a set (or list, tuple) of
  approver names and ``check`` is ``fn(approver, approval) -> bool`` (sync or async;
  ``approval`` is the approval as the API shows it). The key ``"*"`` covers the tenants
  without an entry of their own. A tenant with neither may not be decided for. Without an
  ``approvers`` attribute any non-empty approver may decide. A check that raises refuses
  (fail closed). Slack users are named ``slack:<user id>`` (``slack:U024BE7LH``); HTTP and
  CLI approvers by the name the caller sends.
- ``tenant_secrets``: each tenant's API secret(s): ``{tenant: secret | [secrets]}`` or
  ``fn(tenant) -> secret | [secrets] | None`` (sync or async, for a vault). A list holds
  the current secret and the one being retired, so a secret is rotated without downtime.
  The secrets file (``--tenant-secrets FILE``, env ``FLOWAI_APPROVALS_TENANT_SECRETS``: a
  JSON object of the same shape) comes first; the key ``"*"`` (file, then app) is the
  fallback for tenants without a secret of their own: one credential for all of them, for
  a single-tenant deployment or a trusted operator tool. Secrets are never taken from the
  command line, where other users of the machine could read them.
- ``slack_channels``: ``{"tenant[/agent[/tool or plan]]": channel}`` (a part may be
  ``*``), or ``fn(approval) -> channel | None``. The most specific key wins (more named
  parts; on a tie a named tenant, then a named tool or plan, then a named agent); no match
  falls back to ``--slack-channel`` (env ``FLOWAI_SLACK_CHANNEL``).

The previous single ``signing_secret`` (app attribute, or ``FLOWAI_APPROVALS_SIGNING_SECRET``)
is refused with a message saying how to move to per-tenant secrets: it let a credential of
one tenant decide for every other.

Must not import Kafka, Redis, aiohttp or the rest of the service.
"""

from __future__ import annotations

import inspect
import logging
import os
import stat
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson

from flowai_harness.apps import import_object, load_spec
from flowai_harness.errors import AppLoadError

__all__ = [
    "ANY_TENANT",
    "OLD_SECRET_ENV",
    "SECRETS_ENV",
    "AppPolicy",
    "ApproverPolicy",
    "SlackRoutes",
    "TenantSecrets",
    "load_policy",
]

log = logging.getLogger("flowai.approvals")

SECRETS_ENV: Final = "FLOWAI_APPROVALS_TENANT_SECRETS"
OLD_SECRET_ENV: Final = "FLOWAI_APPROVALS_SIGNING_SECRET"
ANY_TENANT: Final = "*"
MIN_SECRET_BYTES: Final = 16
_MAKE_SECRET: Final = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"

Check = Callable[[str, Mapping[str, Any]], Any]


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


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
            allowed = await _maybe_await(rule(approver, approval))
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


Lookup = Callable[[str], Any]


class TenantSecrets:
    """The secrets that sign a tenant's API requests; see the module docstring."""

    __slots__ = ("_lookup", "_table")

    def __init__(
        self,
        table: Mapping[str, tuple[bytes, ...]] | None = None,
        lookup: Lookup | None = None,
    ) -> None:
        self._table = dict(table or {})
        self._lookup = lookup

    @property
    def configured(self) -> bool:
        return bool(self._table) or self._lookup is not None

    async def of(self, tenant: str) -> tuple[bytes, ...]:
        """The tenant's secrets (its own, else the ``"*"`` fallback); () when it has none."""
        own = self._table.get(tenant)
        if own:
            return own
        if self._lookup is not None and tenant != ANY_TENANT:
            try:
                found = _secrets(await _maybe_await(self._lookup(tenant)), f"tenant {tenant!r}")
            except AppLoadError as exc:
                log.error("tenant_secrets(%r) returned something unusable: %s", tenant, exc)
                return ()
            except Exception:
                log.exception("tenant_secrets(%r) raised; refusing the tenant's requests", tenant)
                return ()
            if found:
                return found
        return self._table.get(ANY_TENANT, ())

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None, app_value: object) -> TenantSecrets:
        """From the secrets file (entries first) and the app's ``tenant_secrets``."""
        table: dict[str, tuple[bytes, ...]] = {}
        lookup: Lookup | None = None
        if callable(app_value):
            lookup = app_value
        elif app_value is not None:
            table.update(_table(app_value, "the app's tenant_secrets"))
        if path is not None:
            table.update(_table(_read_secrets_file(Path(path)), f"the secrets file {path}"))
        return cls(table, lookup)


def _read_secrets_file(path: Path) -> object:
    try:
        mode = path.stat().st_mode
        raw = path.read_bytes()
    except OSError as exc:
        raise AppLoadError(f"cannot read the tenant secrets file {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning(
            "the tenant secrets file %s can be read by other users of this machine; chmod 600 it",
            path,
        )
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise AppLoadError(
            f"the tenant secrets file {path} is not JSON ({exc}); write "
            '{"acme": "<secret>", "globex": ["<new>", "<old>"]}'
        ) from None


def _table(value: object, where: str) -> dict[str, tuple[bytes, ...]]:
    if not isinstance(value, Mapping):
        raise AppLoadError(
            f"{where} must map tenants to a secret or a list of secrets, got {type(value).__name__}"
        )
    table: dict[str, tuple[bytes, ...]] = {}
    for tenant, secrets in value.items():
        if not isinstance(tenant, str) or not tenant:
            raise AppLoadError(f"{where}: tenant keys must be non-empty strings, got {tenant!r}")
        table[tenant] = _secrets(secrets, f"{where}[{tenant!r}]")
        if not table[tenant]:
            raise AppLoadError(f"{where}[{tenant!r}] names no secret")
    return table


def _secrets(value: object, where: str) -> tuple[bytes, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, (str, bytes)) else value
    if not isinstance(items, (list, tuple)):
        raise AppLoadError(f"{where} must be a secret (str) or a list of them, got {value!r}")
    secrets: list[bytes] = []
    for item in items:
        secret = item.encode() if isinstance(item, str) else item
        if not isinstance(secret, bytes) or len(secret) < MIN_SECRET_BYTES:
            raise AppLoadError(
                f"{where}: each secret must be a string of at least {MIN_SECRET_BYTES} "
                f"characters; make one with {_MAKE_SECRET}"
            )
        secrets.append(secret)
    return tuple(secrets)


Route = Callable[[Mapping[str, Any]], Any]


class SlackRoutes:
    """Which Slack channel an approval is posted to; see the module docstring."""

    __slots__ = ("_default", "_function", "_rules")

    def __init__(
        self,
        rules: Mapping[str, str] | None = None,
        *,
        default: str | None = None,
        function: Route | None = None,
    ) -> None:
        self._rules = [(_pattern(key), channel) for key, channel in (rules or {}).items()]
        # Most specific first: named parts, then tenant, tool or plan, agent named.
        self._rules.sort(
            key=lambda rule: (
                -sum(part != "*" for part in rule[0]),
                rule[0][0] == "*",
                rule[0][2] == "*",
                rule[0][1] == "*",
            )
        )
        self._default = default or None
        self._function = function

    @classmethod
    def from_app(cls, value: object, *, default: str | None) -> SlackRoutes:
        if value is None:
            return cls(default=default)
        if callable(value):
            return cls(default=default, function=value)
        if not isinstance(value, Mapping) or not all(
            isinstance(key, str) and key and isinstance(channel, str) and channel
            for key, channel in value.items()
        ):
            raise AppLoadError(
                "slack_channels must map 'tenant[/agent[/tool]]' (parts may be '*') to a "
                "channel, or be fn(approval) -> channel | None"
            )
        return cls(value, default=default)

    async def channel(self, approval: Mapping[str, Any]) -> str | None:
        """The channel for ``approval`` (as the API shows it); None: nowhere to post."""
        if self._function is not None:
            try:
                chosen = await _maybe_await(self._function(approval))
            except Exception:
                log.exception(
                    "slack_channels(%s) raised; using the default channel", approval["id"]
                )
                chosen = None
            if isinstance(chosen, str) and chosen:
                return chosen
        parts = (approval.get("tenant"), approval.get("agent"), approval.get("target"))
        for pattern, channel in self._rules:
            if all(want in ("*", got) for want, got in zip(pattern, parts, strict=True)):
                return channel
        return self._default


def _pattern(key: str) -> tuple[str, str, str]:
    parts = key.split("/")
    if len(parts) > 3 or not all(parts):
        raise AppLoadError(
            f"slack_channels key {key!r}: write 'tenant', 'tenant/agent' or "
            "'tenant/agent/tool' (a part may be '*')"
        )
    padded = [*parts, "*", "*"][:3]
    return padded[0], padded[1], padded[2]


@dataclass(frozen=True)
class AppPolicy:
    """What the approvals service takes from the app and its deployment settings."""

    approvers: ApproverPolicy
    secrets: TenantSecrets = field(default_factory=TenantSecrets)
    # Serve tenants without a secret anyway (development only).
    allow_unauthenticated: bool = False
    slack_routes: SlackRoutes = field(default_factory=SlackRoutes)


def load_policy(
    app: str,
    *,
    secrets_file: str | None = None,
    slack_channel: str | None = None,
    allow_unauthenticated: bool = False,
    environ: Mapping[str, str] | None = None,
) -> AppPolicy:
    """Load ``--app`` and read its ``approvers``, ``tenant_secrets`` and ``slack_channels``."""
    env = os.environ if environ is None else environ
    spec = load_spec(app)
    # An attribute of the app object: the spec, or the function returning it (the import is
    # cached, so this finds the object load_spec did).
    target = import_object(app)

    def attribute(name: str) -> Any:
        value = getattr(target, name, None)
        return getattr(spec, name, None) if value is None else value

    if env.get(OLD_SECRET_ENV) or attribute("signing_secret") is not None:
        raise AppLoadError(
            f"{app}: one signing secret for every tenant ({OLD_SECRET_ENV} or the app's "
            "signing_secret) is no longer accepted: a credential of one tenant could decide "
            "for all. Give each tenant its own: a JSON file {tenant: secret} named by "
            f"--tenant-secrets or {SECRETS_ENV}, or the app's tenant_secrets; the key '*' "
            "keeps one secret for the tenants without their own"
        )
    return AppPolicy(
        approvers=ApproverPolicy.from_app(attribute("approvers"), where=f"{app}: approvers"),
        secrets=TenantSecrets.load(secrets_file, attribute("tenant_secrets")),
        allow_unauthenticated=allow_unauthenticated,
        slack_routes=SlackRoutes.from_app(attribute("slack_channels"), default=slack_channel),
    )
