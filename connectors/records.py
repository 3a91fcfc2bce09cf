"""Writing a batch's records to the ops store: upsert by primary key, telling new from changed.

A record is identified by (tenant, integration, stream, primary key), so reading the same record
twice (a resumed sync, an inclusive cursor) updates it in place instead of duplicating it, and an
unchanged record (same content hash) is not rewritten at all.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from agentprovision.store.connector_models import SyncRecord

MAX_KEY = 500


def record_key(row: dict[str, Any], primary_key: tuple[str, ...]) -> str:
    values = [row.get(k) for k in primary_key]
    key = str(values[0]) if len(values) == 1 else json.dumps(values, default=str)
    if len(key) > MAX_KEY:
        key = "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    return key


def content_hash(row: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(row, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class UpsertOutcome:
    inserted: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    updated: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    unchanged: int = 0


def upsert_records(
    session: Session,
    *,
    tenant_id: str,
    integration_id: str,
    stream: str,
    primary_key: tuple[str, ...],
    rows: list[dict[str, Any]],
    sync_id: str,
) -> UpsertOutcome:
    latest: dict[str, dict[str, Any]] = {}
    for row in rows:  # within one batch the last version of a record wins
        latest[record_key(row, primary_key)] = row
    outcome = UpsertOutcome()
    if not latest:
        return outcome
    existing: dict[str, SyncRecord] = {}
    keys = list(latest)
    for start in range(0, len(keys), 500):  # stay under bound-parameter limits
        chunk = keys[start : start + 500]
        for record in session.scalars(
            select(SyncRecord).where(
                SyncRecord.tenant_id == tenant_id,
                SyncRecord.integration_id == integration_id,
                SyncRecord.stream == stream,
                SyncRecord.record_key.in_(chunk),
            )
        ):
            existing[record.record_key] = record
    now = datetime.now(UTC)
    for key, row in latest.items():
        digest = content_hash(row)
        record = existing.get(key)
        if record is None:
            session.add(
                SyncRecord(
                    tenant_id=tenant_id,
                    integration_id=integration_id,
                    stream=stream,
                    record_key=key,
                    data=row,
                    content_hash=digest,
                    first_sync_id=sync_id,
                    last_sync_id=sync_id,
                    created_at=now,
                    updated_at=now,
                )
            )
            outcome.inserted.append((key, row))
        elif record.content_hash != digest:
            record.data, record.content_hash, record.last_sync_id, record.updated_at = row, digest, sync_id, now
            outcome.updated.append((key, row))
        else:
            outcome.unchanged += 1
    session.flush()
    return outcome


def records_of(session: Session, tenant_id: str, integration_id: str, stream: str) -> list[dict[str, Any]]:
    """Every stored record of one stream of one tenant's integration, oldest first."""
    return [
        r.data
        for r in session.scalars(
            select(SyncRecord)
            .where(
                SyncRecord.tenant_id == tenant_id,
                SyncRecord.integration_id == integration_id,
                SyncRecord.stream == stream,
            )
            .order_by(SyncRecord.created_at, SyncRecord.record_key)
        )
    ]
