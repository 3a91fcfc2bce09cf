"""Appending to the audit trail: every record is chained by SHA-256 to the one before it.

There is one chain per tenant and one for platform-level actions, so a tenant's trail can be
verified (and handed to its auditor) on its own. Editing, deleting or reordering any record breaks
its chain at that record; cutting records off the end is caught against chain heads exported
earlier (`chain_heads`).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from agentprovision.store.models import AuditRecord

GENESIS_HASH = "0" * 64
PLATFORM_CHAIN = "__platform__"  # not a valid tenant slug, so it cannot collide


def chain_of(tenant_id: str | None) -> str:
    return tenant_id if tenant_id is not None else PLATFORM_CHAIN


def _canonical(record: AuditRecord) -> bytes:
    occurred = record.occurred_at
    if occurred.tzinfo is None:  # SQLite hands datetimes back without their zone; they were UTC
        occurred = occurred.replace(tzinfo=UTC)
    body = {
        "record_id": record.record_id,
        "tenant_id": record.tenant_id,
        "occurred_at": occurred.astimezone(UTC).isoformat(),
        "actor": record.actor,
        "action": record.action,
        "target_type": record.target_type,
        "target_id": record.target_id,
        "details": record.details,
        "source": record.source,
        "outcome": record.outcome,
        "prev_hash": record.prev_hash,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()


def record_hash(record: AuditRecord) -> str:
    return hashlib.sha256(_canonical(record)).hexdigest()


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
    record.record_hash = record_hash(record)
    session.add(record)
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
    count = 0
    for record in session.scalars(select(AuditRecord).order_by(AuditRecord.seq)):
        chain = chain_of(record.tenant_id)
        if only is not None and chain not in only:
            continue
        count += 1
        expected_prev = last.get(chain, GENESIS_HASH)
        if record_hash(record) != record.record_hash:
            return VerifyResult(False, count, len(last), chain, record.seq, "its content does not match its hash")
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
