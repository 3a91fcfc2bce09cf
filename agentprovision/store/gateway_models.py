"""Ops-store tables of the LLM gateway: budget counters and reservations, rate-limit windows.

These rows are what make budgets and rate limits hold across processes: every admission checks
and increments each counter it touches in one conditional UPDATE, which holds the row lock
(PostgreSQL) or the database write lock (SQLite, BEGIN IMMEDIATE) while it decides, so two
processes can never both spend the last cent. See agents/gateway/budgets.py and ratelimits.py.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, DateTime, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from agentprovision.store.models import Base, Money, utcnow


class GatewayBudgetCounter(Base):
    """Spend of one budget scope in one calendar month: settled cost plus cost still reserved.

    `scope` is `platform`, `tenant:<id>`, `department:<tenant>/<id>` or `agent:<id>`; the platform
    row has a NULL tenant_id because it belongs to no tenant.
    """

    __tablename__ = "gateway_budget_counters"

    scope: Mapped[str] = mapped_column(String(200), primary_key=True)
    month: Mapped[str] = mapped_column(String(7), primary_key=True)  # YYYY-MM, UTC
    tenant_id: Mapped[str | None] = mapped_column(String(63), index=True)
    level: Mapped[str] = mapped_column(String(16))
    spent_usd: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    reserved_usd: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    # Set when the soft threshold is first crossed (or the hard limit first refuses) this month,
    # so each alert fires once per scope and month, whichever process sees it first.
    soft_alerted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    hard_alerted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class GatewayReservation(Base):
    """One call's worst-case cost held against its budgets until the call settles or fails."""

    __tablename__ = "gateway_reservations"
    __table_args__ = (Index("ix_gateway_reservations_status_created", "status", "created_at"),)

    reservation_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(63), index=True)
    department_id: Mapped[str] = mapped_column(String(63))
    agent_id: Mapped[str] = mapped_column(String(63))
    run_id: Mapped[str | None] = mapped_column(String(36))
    month: Mapped[str] = mapped_column(String(7))
    scopes: Mapped[str] = mapped_column(String(500))  # the counter scopes it holds, space-separated
    reserved_usd: Mapped[Decimal] = mapped_column(Money)
    actual_usd: Mapped[Decimal | None] = mapped_column(Money)
    status: Mapped[str] = mapped_column(String(16))  # reserved, settled, released
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class GatewayRateWindow(Base):
    """Requests and tokens one scope used in one minute (a sliding window reads this and the last)."""

    __tablename__ = "gateway_rate_windows"

    scope: Mapped[str] = mapped_column(String(200), primary_key=True)
    window_start: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(63), index=True)
    requests: Mapped[int] = mapped_column(Integer, default=0)
    tokens: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), default=0)
