"""Ops-store table of the privacy capability: the seal that makes audit records erasable.

An audit record's hash cannot cover personal data directly, or erasing that data would break the
chain. Since hash format 2, each record has a seal: a random salt and HMAC-SHA256(salt, personal
fields). The record hash covers the HMAC instead of the raw personal fields, so an erasure can
redact them, destroy the salt (nothing left can be brute-forced back to the subject) and still
leave a chain that verifies. Records written before format 2 have no seal until they are erased;
then they get one with `hash_version` 1 that says so.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from agentprovision.store.models import Base


class AuditSeal(Base):
    """Salt and keyed digest of one audit record's personal fields (actor, target_id, details)."""

    __tablename__ = "audit_seals"

    record_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str | None] = mapped_column(String(63), index=True)
    hash_version: Mapped[int] = mapped_column(Integer)
    salt: Mapped[str | None] = mapped_column(String(64))  # hex; NULL once erased
    digest: Mapped[str | None] = mapped_column(String(64))  # NULL only for erased format-1 records
    erased_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    erasure_record_id: Mapped[str | None] = mapped_column(String(36))  # the privacy.erase record naming it
