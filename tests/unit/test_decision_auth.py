"""Signed approval decisions: what a signature covers, and everything that makes one fail."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from flowai_harness.errors import DecisionUnverifiedError, UsageError
from flowai_harness.kafka.decision_auth import (
    DecisionSigner,
    DecisionVerifier,
    generate_keys,
    load_public_keys,
    main,
)

PRIVATE, PUBLIC = generate_keys()
SIGNER = DecisionSigner.from_pem(PRIVATE)
VERIFIER = DecisionVerifier.from_pems([PUBLIC])


def decision(**payload: Any) -> dict[str, Any]:
    return {
        "schema": "flowai.v1.ApprovalDecision",
        "id": "d-1",
        "tenant": "acme",
        "thread_id": "t-1",
        "run_id": None,
        "causation_id": None,
        "ts": 1,
        "payload": {
            "approval_id": "appr:t-1/run-1/call-1",
            "outcome": "approve",
            "approver": "alice",
            **payload,
        },
    }


def test_a_signed_decision_verifies_and_names_its_key() -> None:
    signed = SIGNER.signed(decision(feedback="ok", partial={"amount": 5}))
    assert VERIFIER.verify(signed) == SIGNER.kid
    assert signed["payload"]["signature"]["alg"] == "ed25519"
    # Re-signing replaces the old signature rather than signing it.
    again = SIGNER.signed(signed)
    assert VERIFIER.verify(again) == SIGNER.kid


@pytest.mark.parametrize(
    ("where", "change"),
    [
        ("tenant", lambda e: e.update(tenant="globex")),
        ("thread", lambda e: e.update(thread_id="t-2")),
        ("approval", lambda e: e["payload"].update(approval_id="appr:t-1/run-1/call-2")),
        ("outcome", lambda e: e["payload"].update(outcome="reject")),
        ("approver", lambda e: e["payload"].update(approver="mallory")),
        ("feedback", lambda e: e["payload"].update(feedback="changed")),
        ("partial", lambda e: e["payload"].update(partial={"amount": 5000})),
        ("issued_at", lambda e: e["payload"]["signature"].update(issued_at=2)),
    ],
)
def test_changing_anything_that_decides_breaks_the_signature(where: str, change: Any) -> None:
    signed = SIGNER.signed(decision(feedback="ok", partial={"amount": 5}))
    change(signed)
    with pytest.raises(DecisionUnverifiedError, match="does not match what it decides"):
        VERIFIER.verify(signed)


def test_the_envelope_id_is_not_signed_so_a_copy_decides_the_same_approval_only() -> None:
    signed = SIGNER.signed(decision())
    copy = {**signed, "id": "d-2", "ts": 99}
    assert VERIFIER.verify(copy) == SIGNER.kid


def test_unsigned_unknown_key_and_other_algorithms_are_refused() -> None:
    with pytest.raises(DecisionUnverifiedError, match="not signed"):
        VERIFIER.verify(decision())
    stranger = DecisionSigner.from_pem(generate_keys()[0])
    with pytest.raises(DecisionUnverifiedError, match="does not trust"):
        VERIFIER.verify(stranger.signed(decision()))
    # A stranger's key under the trusted key's id: the signature does not hold.
    forged = DecisionSigner.from_pem(generate_keys()[0], kid=SIGNER.kid).signed(decision())
    with pytest.raises(DecisionUnverifiedError, match="does not match"):
        VERIFIER.verify(forged)
    signed = SIGNER.signed(decision())
    signed["payload"]["signature"]["alg"] = "hs256"
    with pytest.raises(DecisionUnverifiedError, match="only ed25519"):
        VERIFIER.verify(signed)
    signed["payload"]["signature"] = {"alg": "ed25519", "kid": SIGNER.kid}
    with pytest.raises(DecisionUnverifiedError, match="needs kid"):
        VERIFIER.verify(signed)
    signed["payload"]["signature"] = {
        "alg": "ed25519",
        "kid": SIGNER.kid,
        "issued_at": 1,
        "sig": "not base64!",
    }
    with pytest.raises(DecisionUnverifiedError):
        VERIFIER.verify(signed)


def test_a_verifier_trusts_several_keys_for_rotation() -> None:
    old_private, old_public = generate_keys()
    verifier = DecisionVerifier.from_pems([PUBLIC, old_public])
    assert verifier.verify(DecisionSigner.from_pem(old_private).signed(decision()))
    assert verifier.verify(SIGNER.signed(decision()))
    assert len(verifier.key_ids) == 2


def test_bad_keys_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="at least one public key"):
        DecisionVerifier({})
    with pytest.raises(UsageError, match="cannot read the key file"):
        load_public_keys([str(tmp_path / "missing.pem")])
    with pytest.raises(UsageError, match="not a PEM private key"):
        DecisionSigner.from_pem(b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")


def test_keygen_writes_a_private_key_only_its_owner_reads(tmp_path: Path) -> None:
    assert main(["keygen", "--out", str(tmp_path)]) == 0
    private = tmp_path / "decision-key.pem"
    public = tmp_path / "decision-key.pub.pem"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    signer = DecisionSigner.from_pem(str(private))
    verifier = DecisionVerifier.from_pems([str(public)])
    assert verifier.verify(signer.signed(decision())) == signer.kid
    with pytest.raises(FileExistsError):
        main(["keygen", "--out", str(tmp_path)])  # never overwrites a key
