"""Appending to the audit trail: every record is chained by SHA-256 to the one before it.

There is one chain per tenant and one for platform-level actions, so a tenant's trail can be
verified (and handed to its auditor) on its own. Editing, deleting or reordering any record breaks
its chain at that record; cutting records off the end is caught against chain heads exported
earlier (`chain_heads`).

Hash formats, told apart per record by its seal (`audit_seals`):
- format 1 (records written before seals existed, no seal row): the hash covers every field.
- format 2 (seal with hash_version 2): the personal fields (actor, target_id, details) are covered
  through HMAC-SHA256 with a random per-record salt kept in the seal; the record hash covers that
  digest. A privacy erasure can then redact the personal fields and destroy the salt while the
  chain still verifies; the erased record must be named by a later `privacy.erase` record of the
  same chain (the tombstone), or verification fails.
- an erased format-1 record (seal with hash_version 1) can only be checked for its place in the
  chain, since its hash covered the raw personal fields that are gone.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from agentprovision.store.models import AuditRecord
from agentprovision.store.privacy_models import AuditSeal

GENESIS_HASH = "0" * 64
PLATFORM_CHAIN = "__platform__"  # not a valid tenant slug, so it cannot collide
HASH_VERSION = 2
ERASE_ACTION = "privacy.erase"  # the tombstone: names the records an erasure redacted


def chain_of(tenant_id: str | None) -> str:
    return tenant_id if tenant_id is not None else PLATFORM_CHAIN


def _occurred(record: AuditRecord) -> str:
    occurred = record.occurred_at
    if occurred.tzinfo is None:  # SQLite hands datetimes back without their zone; they were UTC
        occurred = occurred.replace(tzinfo=UTC)
    return occurred.astimezone(UTC).isoformat()


def _dumps(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()


def _canonical(record: AuditRecord) -> bytes:
    """Format 1: every field, personal ones included."""
    body = {
        "record_id": record.record_id,
        "tenant_id": record.tenant_id,
        "occurred_at": _occurred(record),
        "actor": record.actor,
        "action": record.action,
        "target_type": record.target_type,
        "target_id": record.target_id,
        "details": record.details,
        "source": record.source,
        "outcome": record.outcome,
        "prev_hash": record.prev_hash,
    }
    return _dumps(body)


def personal_digest(record: AuditRecord, salt_hex: str) -> str:
    """Format 2: the keyed digest that stands in for the personal fields in the record hash."""
    personal = _dumps({"actor": record.actor, "target_id": record.target_id, "details": record.details})
    return hmac.new(bytes.fromhex(salt_hex), personal, hashlib.sha256).hexdigest()


def _canonical_v2(record: AuditRecord, digest: str) -> bytes:
    body = {
        "v": 2,
        "record_id": record.record_id,
        "tenant_id": record.tenant_id,
        "occurred_at": _occurred(record),
        "action": record.action,
        "target_type": record.target_type,
        "source": record.source,
        "outcome": record.outcome,
        "personal_digest": digest,
        "prev_hash": record.prev_hash,
    }
    return _dumps(body)


def record_hash(record: AuditRecord, seal: AuditSeal | None = None) -> str:
    """The hash a record should carry: format 1 without a seal, format 2 with a format-2 seal."""
    if seal is None or seal.hash_version == 1:
        return hashlib.sha256(_canonical(record)).hexdigest()
    return hashlib.sha256(_canonical_v2(record, seal.digest or "")).hexdigest()


def append_audit(
    session: Session,
    *,
    actor: str,
    action: str,
    target_type: str,
    target_id: str,
    tenant_id: str | None = None,
    details: dict[str, Any] | None = None,
    source: str = "api",
    outcome: Literal["success", "denied", "failure"] = "success",
) -> AuditRecord:
    """Add one record inside the caller's transaction, so it commits or rolls back with the change."""
    if session.get_bind().dialect.name == "postgresql":
        # Serialise appenders of one chain so two transactions never chain onto the same predecessor.
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:chain))"), {"chain": chain_of(tenant_id)})
    same_chain = AuditRecord.tenant_id.is_(None) if tenant_id is None else AuditRecord.tenant_id == tenant_id
    previous = session.scalar(
        select(AuditRecord.record_hash).where(same_chain).order_by(AuditRecord.seq.desc()).limit(1)
    )
    record = AuditRecord(
        record_id=str(uuid.uuid4()),
        tenant_id=tenant_id,
        occurred_at=datetime.now(UTC),
        actor=actor,
        action=action,
        target_type=target_type,
        target_id=target_id,
        details=details or {},
        source=source,
        outcome=outcome,
        prev_hash=previous or GENESIS_HASH,
    )
    salt = secrets.token_hex(32)
    seal = AuditSeal(
        record_id=record.record_id,
        tenant_id=tenant_id,
        hash_version=HASH_VERSION,
        salt=salt,
        digest=personal_digest(record, salt),
    )
    record.record_hash = record_hash(record, seal)
    session.add_all([record, seal])
    session.flush()
    return record


@dataclass(frozen=True)
class VerifyResult:
    intact: bool
    records: int
    chains: int
    chain: str | None = None
    first_bad_seq: int | None = None
    problem: str | None = None


def chain_heads(session: Session) -> dict[str, tuple[int, str]]:
    """The last (seq, hash) of every chain, to export and later check the tail was not cut off."""
    heads: dict[str, tuple[int, str]] = {}
    for seq, tenant_id, digest in session.execute(
        select(AuditRecord.seq, AuditRecord.tenant_id, AuditRecord.record_hash).order_by(AuditRecord.seq)
    ):
        heads[chain_of(tenant_id)] = (seq, digest)
    return heads


def verify_chain(
    session: Session, anchors: dict[str, tuple[int, str]] | None = None, only: set[str] | None = None
) -> VerifyResult:
    """Walk every chain (or only the named ones) in order and name the first record that does not verify.

    `anchors` are chain heads exported earlier: each must still be in its chain, with the same hash.
    """
    last: dict[str, str] = {}
    seen: dict[str, dict[int, str]] = {}
    seals = {seal.record_id: seal for seal in session.scalars(select(AuditSeal))}
    tombstones: dict[str, tuple[str, int, set[str]]] = {}  # record_id -> (chain, seq, records it erased)
    erased: list[tuple[AuditRecord, AuditSeal]] = []
    count = 0
    for record in session.scalars(select(AuditRecord).order_by(AuditRecord.seq)):
        chain = chain_of(record.tenant_id)
        if only is not None and chain not in only:
            continue
        count += 1
        expected_prev = last.get(chain, GENESIS_HASH)
        seal = seals.get(record.record_id)
        if seal is not None and (seal.tenant_id != record.tenant_id):
            return VerifyResult(False, count, len(last), chain, record.seq, "its seal belongs to another chain")
        if seal is not None and seal.erased_at is not None:
            erased.append((record, seal))
        elif seal is not None and (seal.salt is None or personal_digest(record, seal.salt) != seal.digest):
            return VerifyResult(False, count, len(last), chain, record.seq, "its content does not match its hash")
        # An erased format-1 record's hash covered the personal fields it no longer has: only its place is checked.
        if not (seal is not None and seal.hash_version == 1) and record_hash(record, seal) != record.record_hash:
            return VerifyResult(False, count, len(last), chain, record.seq, "its content does not match its hash")
        if record.action == ERASE_ACTION and not (seal is not None and seal.erased_at is not None):
            named = record.details.get("erased_records", []) if isinstance(record.details, dict) else []
            tombstones[record.record_id] = (chain, record.seq, set(named))
        if record.prev_hash != expected_prev:
            return VerifyResult(
                False,
                count,
                len(last),
                chain,
                record.seq,
                "it does not follow the record before it (a record was removed or reordered)",
            )
        last[chain] = record.record_hash
        seen.setdefault(chain, {})[record.seq] = record.record_hash
    for record, seal in erased:
        tombstone = tombstones.get(seal.erasure_record_id or "")
        chain = chain_of(record.tenant_id)
        if (
            tombstone is None
            or tombstone[0] != chain
            or tombstone[1] <= record.seq
            or record.record_id not in tombstone[2]
        ):
            return VerifyResult(
                False,
                count,
                len(last),
                chain,
                record.seq,
                "it is marked erased but no erasure record of its chain names it",
            )
    for chain, (seq, digest) in (anchors or {}).items():
        if only is not None and chain not in only:
            continue
        if seen.get(chain, {}).get(seq) != digest:
            return VerifyResult(
                False,
                count,
                len(last),
                chain,
                seq,
                "an exported chain head is missing or changed (records were cut off the end)",
            )
    return VerifyResult(True, count, len(last))


def export_heads(session: Session, directory: Path) -> Path:
    """Write every chain's head to a new timestamped file; later verifications anchor on these files."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = directory / f"chain_heads_{stamp}.json"
    heads = {chain: {"seq": seq, "hash": digest} for chain, (seq, digest) in chain_heads(session).items()}
    target.write_text(json.dumps(heads, indent=2, sort_keys=True))
    return target


def latest_exported_heads(directory: Path) -> dict[str, tuple[int, str]] | None:
    exports = sorted(directory.glob("chain_heads_*.json"))
    if not exports:
        return None
    data = json.loads(exports[-1].read_text())
    return {chain: (head["seq"], head["hash"]) for chain, head in data.items()}


@dataclass(frozen=True)
class Redaction:
    """New personal fields for one audit record; every other field stays as it is."""

    record_id: str
    actor: str
    target_id: str
    details: dict[str, Any]


def erase_personal_fields(
    session: Session,
    *,
    tenant_id: str | None,
    redactions: list[Redaction],
    actor: str,
    erasure_id: str,
    details: dict[str, Any] | None = None,
    source: str = "cli",
) -> AuditRecord:
    """Redact records of one chain and leave the tombstone that names them; returns the tombstone.

    The tombstone is appended first, in the caller's transaction, so the redaction and the record
    of it commit together. On PostgreSQL the redaction goes through `audit_erase` (migration
    0007_privacy), the only path by which any role can change an audit record.
    """
    tombstone = append_audit(
        session,
        actor=actor,
        action=ERASE_ACTION,
        target_type="subject",
        target_id=erasure_id,
        tenant_id=tenant_id,
        details={
            **(details or {}),
            "erasure_id": erasure_id,
            "erased_records": sorted(r.record_id for r in redactions),
        },
        source=source,
    )
    if not redactions:
        return tombstone
    if session.get_bind().dialect.name == "postgresql":
        changes = [
            {"record_id": r.record_id, "actor": r.actor, "target_id": r.target_id, "details": r.details}
            for r in redactions
        ]
        session.execute(
            text("SELECT audit_erase(:tombstone, CAST(:changes AS jsonb))"),
            {"tombstone": tombstone.record_id, "changes": json.dumps(changes, default=str)},
        )
        session.expire_all()
        return tombstone
    now = datetime.now(UTC)
    seals = {
        seal.record_id: seal
        for seal in session.scalars(select(AuditSeal).where(AuditSeal.record_id.in_([r.record_id for r in redactions])))
    }
    for redaction in redactions:
        seal = seals.get(redaction.record_id)
        if seal is None:  # a format-1 record: its seal only says that it was erased
            session.add(
                AuditSeal(
                    record_id=redaction.record_id,
                    tenant_id=tenant_id,
                    hash_version=1,
                    erased_at=now,
                    erasure_record_id=tombstone.record_id,
                )
            )
        else:
            seal.salt = None
            seal.erased_at = seal.erased_at or now
            seal.erasure_record_id = tombstone.record_id
    session.flush()
    for redaction in redactions:
        session.execute(
            update(AuditRecord)
            .where(
                AuditRecord.record_id == redaction.record_id,
                AuditRecord.tenant_id.is_(tenant_id) if tenant_id is None else AuditRecord.tenant_id == tenant_id,
            )
            .values(actor=redaction.actor, target_id=redaction.target_id, details=redaction.details)
            .execution_options(synchronize_session=False)
        )
    session.expire_all()
    return tombstone
