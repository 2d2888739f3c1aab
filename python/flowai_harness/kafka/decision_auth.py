"""Signed approval decisions: the runtime's proof that a decision came from a holder of a
deciding key (the approvals service, or an operator's tool), not from whoever can write to
the decisions topic.

Owns :class:`DecisionSigner`, :class:`DecisionVerifier`, :func:`signed_fields`,
:func:`generate_keys` and the key loaders. A signature is Ed25519 over the canonical JSON of
everything that decides: the tenant, the thread, the approval id, the outcome, the approver,
the feedback, the partial and when it was signed. So a captured decision cannot be moved to
another approval, another thread or another tenant, nor have its outcome or approver
changed; sent again as it is, it decides the same approval the same way (and approvals are
single-use: the first decision wins, a second approve by the same approver is refused).

It travels in the ``flowai.v1.ApprovalDecision`` payload::

    "signature": {"alg": "ed25519", "kid": "<key id>", "issued_at": <ms>, "sig": "<base64url>"}

The approvals service holds a private key (``--decision-key``, PEM); runtimes hold the public
keys they trust (``--decision-public-key``, repeatable for rotation), by key id (the first 16
hex digits of the SHA-256 of the raw public key, unless given). Ed25519 rather than a shared
HMAC secret: a runtime (or anyone who reads its configuration) can check decisions but cannot
make one.

``python -m flowai_harness.kafka.decision_auth keygen --out DIR`` writes ``decision-key.pem`` (keep
it secret: the approvals service's) and ``decision-key.pub.pem`` (give it to the runtimes).

Needs the ``cryptography`` package (the ``kafka`` extra), imported when a key is loaded. Must
not import the runtime, the native engine, the bus or any service.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

import orjson

from ..errors import DecisionUnverifiedError, UsageError

__all__ = [
    "DECISION_UNVERIFIED",
    "SIGNATURE_VERSION",
    "DecisionSigner",
    "DecisionUnverifiedError",
    "DecisionVerifier",
    "generate_keys",
    "key_id",
    "key_list",
    "load_private_key",
    "load_public_keys",
    "main",
    "signed_fields",
]

DECISION_UNVERIFIED: Final = DecisionUnverifiedError.code
SIGNATURE_VERSION: Final = 1
ALGORITHM: Final = "ed25519"


def signed_fields(envelope: Mapping[str, Any], issued_at: int) -> bytes:
    """The bytes a decision's signature covers: the canonical JSON (sorted keys, no spaces)
    of what decides, from an ``ApprovalDecision`` envelope (as a dict)."""
    payload = envelope["payload"]
    fields = {
        "v": SIGNATURE_VERSION,
        "tenant": envelope["tenant"],
        "thread_id": envelope["thread_id"],
        "approval_id": payload["approval_id"],
        "outcome": payload["outcome"],
        "approver": payload.get("approver"),
        "feedback": payload.get("feedback"),
        "partial": payload.get("partial"),
        "issued_at": issued_at,
    }
    return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)


def key_id(public_key: Any) -> str:
    """A public key's id: the first 16 hex digits of the SHA-256 of its raw bytes."""
    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(
        encoding=serialization.Encoding.Raw, format=serialization.PublicFormat.Raw
    )
    return hashlib.sha256(raw).hexdigest()[:16]


class DecisionSigner:
    """Signs decisions with one Ed25519 private key."""

    def __init__(self, private_key: Any, kid: str | None = None) -> None:
        self._key = private_key
        self.kid = kid or key_id(private_key.public_key())

    @classmethod
    def from_pem(cls, pem: bytes | str, kid: str | None = None) -> DecisionSigner:
        return cls(load_private_key(pem), kid)

    def sign(self, envelope: Mapping[str, Any], *, issued_at: int | None = None) -> dict[str, Any]:
        """The ``signature`` object for ``envelope`` (an ApprovalDecision as a dict)."""
        at = time.time_ns() // 1_000_000 if issued_at is None else issued_at
        sig = self._key.sign(signed_fields(envelope, at))
        return {
            "alg": ALGORITHM,
            "kid": self.kid,
            "issued_at": at,
            "sig": base64.urlsafe_b64encode(sig).decode().rstrip("="),
        }

    def signed(self, envelope: dict[str, Any]) -> dict[str, Any]:
        """``envelope`` with its payload's ``signature`` set (a new dict)."""
        payload = {k: v for k, v in envelope["payload"].items() if k != "signature"}
        unsigned = {**envelope, "payload": payload}
        return {**unsigned, "payload": {**payload, "signature": self.sign(unsigned)}}


class DecisionVerifier:
    """Checks decisions against the public keys a runtime trusts, by key id."""

    def __init__(self, public_keys: Mapping[str, Any]) -> None:
        if not public_keys:
            raise UsageError(
                "a decision verifier needs at least one public key (--decision-public-key)"
            )
        self._keys = dict(public_keys)

    @classmethod
    def from_pems(cls, pems: Iterable[bytes | str]) -> DecisionVerifier:
        return cls(load_public_keys(pems))

    @property
    def key_ids(self) -> list[str]:
        return sorted(self._keys)

    def verify(self, envelope: Mapping[str, Any]) -> str:
        """The signing key's id when ``envelope``'s signature holds; else raises
        :class:`DecisionUnverifiedError` saying what is wrong."""
        from cryptography.exceptions import InvalidSignature

        payload = envelope.get("payload")
        signature = payload.get("signature") if isinstance(payload, Mapping) else None
        if not isinstance(signature, Mapping):
            raise DecisionUnverifiedError(
                "the decision is not signed; decide through the approvals service (or sign "
                "it with a deciding key: flowai_harness.kafka.decision_auth.DecisionSigner)"
            )
        kid, issued_at, sig = signature.get("kid"), signature.get("issued_at"), signature.get("sig")
        if signature.get("alg") != ALGORITHM:
            raise DecisionUnverifiedError(
                f"the decision is signed with {signature.get('alg')!r}; only {ALGORITHM} is "
                "accepted"
            )
        if not isinstance(kid, str) or not isinstance(sig, str) or not isinstance(issued_at, int):
            raise DecisionUnverifiedError(
                "the decision's signature needs kid (str), issued_at (int ms) and sig (base64url)"
            )
        key = self._keys.get(kid)
        if key is None:
            raise DecisionUnverifiedError(
                f"the decision is signed by key {kid!r}, which this runtime does not trust "
                f"(it trusts {', '.join(self.key_ids)}); give it the approvals service's "
                "public key with --decision-public-key"
            )
        try:
            raw = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
            key.verify(raw, signed_fields(envelope, issued_at))
        except (InvalidSignature, ValueError):
            raise DecisionUnverifiedError(
                f"the decision's signature (key {kid!r}) does not match what it decides: the "
                "tenant, thread, approval, outcome, approver, feedback or partial was changed, "
                "or the signature is not one"
            ) from None
        return kid


def key_list(value: str | None) -> list[str]:
    """Key files named in one setting (``FLOWAI_DECISION_PUBLIC_KEYS``): separated by commas
    or by the path separator, as a deployment finds easier."""
    parts = (value or "").replace(os.pathsep, ",").split(",")
    return [part.strip() for part in parts if part.strip()]


def _read(value: bytes | str | os.PathLike[str]) -> bytes:
    """PEM text, or the path of a file holding it."""
    if isinstance(value, bytes):
        return value
    text = os.fspath(value)
    if "-----BEGIN" in text:
        return text.encode()
    try:
        return Path(text).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read the key file {text!r}: {exc.strerror}") from None


def load_private_key(value: bytes | str | os.PathLike[str]) -> Any:
    """An Ed25519 private key from PEM (text or a file path)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(_read(value), password=None)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"the decision key is not a PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UsageError(
            f"the decision key must be an Ed25519 key, got {type(key).__name__}; make one "
            "with `python -m flowai_harness.kafka.decision_auth keygen`"
        )
    return key


def load_public_keys(values: Iterable[bytes | str | os.PathLike[str]]) -> dict[str, Any]:
    """Ed25519 public keys (PEM text or file paths), by key id."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    keys: dict[str, Any] = {}
    for value in values:
        try:
            key = serialization.load_pem_public_key(_read(value))
        except (ValueError, TypeError) as exc:
            raise UsageError(f"a decision public key is not a PEM public key: {exc}") from None
        if not isinstance(key, Ed25519PublicKey):
            raise UsageError(
                f"a decision public key must be an Ed25519 key, got {type(key).__name__}"
            )
        keys[key_id(key)] = key
    return keys


def generate_keys() -> tuple[bytes, bytes]:
    """A new key pair as (private PEM, public PEM)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )
    public_pem = private.public_key().public_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PublicFormat.SubjectPublicKeyInfo,
    )
    return private_pem, public_pem


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flowai_harness.kafka.decision_auth",
        description="Make the key pair that signs approval decisions.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    keygen = commands.add_parser("keygen", help="write decision-key.pem and decision-key.pub.pem")
    keygen.add_argument("--out", type=Path, default=Path("."), help="directory (.)")
    keygen.add_argument(
        "--if-missing",
        action="store_true",
        help="do nothing when the pair is there already (a deployment's first start)",
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    private_path = args.out / "decision-key.pem"
    public_path = args.out / "decision-key.pub.pem"
    if args.if_missing and private_path.exists() and public_path.exists():
        print(f"{private_path} and {public_path} are there already", file=sys.stderr)
        return 0
    private_pem, public_pem = generate_keys()
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(private_pem)
    public_path.write_bytes(public_pem)
    kid = next(iter(load_public_keys([public_pem])))
    print(
        f"wrote {private_path} (secret: the approvals service's) and {public_path} "
        f"(for the runtimes); key id {kid}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
