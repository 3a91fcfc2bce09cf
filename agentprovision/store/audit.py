"""Appending to the audit trail: every record is chained to the one before it by SHA-256.

The chain is global (one sequence for the whole platform) so removing or editing any record,
in any tenant, breaks verification from that point on.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from agentprovision.store.models import AuditRecord

GENESIS_HASH = "0" * 64
# Any constant works; it only has to be the same for every writer of the chain.
_CHAIN_LOCK_KEY = 7_114_023_501


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
) -> AuditRecord:
    """Add one record inside the caller's transaction, so it commits or rolls back with the change."""
    if session.get_bind().dialect.name == "postgresql":
        # Serialise appenders so two transactions never chain onto the same predecessor.
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CHAIN_LOCK_KEY})
    previous = session.scalar(select(AuditRecord.record_hash).order_by(AuditRecord.seq.desc()).limit(1))
    record = AuditRecord(
        record_id=str(uuid.uuid4()),
        tenant_id=tenant_id,
        occurred_at=datetime.now(UTC),
        actor=actor,
        action=action,
        target_type=target_type,
        target_id=target_id,
        details=details or {},
        prev_hash=previous or GENESIS_HASH,
    )
    record.record_hash = record_hash(record)
    session.add(record)
    session.flush()
    return record


def verify_chain(session: Session) -> tuple[bool, int | None]:
    """Walk the chain in order; return (intact, seq of the first broken record)."""
    expected_prev = GENESIS_HASH
    for record in session.scalars(select(AuditRecord).order_by(AuditRecord.seq)):
        if record.prev_hash != expected_prev or record_hash(record) != record.record_hash:
            return False, record.seq
        expected_prev = record.record_hash
    return True, None
