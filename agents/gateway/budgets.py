"""Monthly budgets, platform > tenant > department > agent, enforced by reservations in the ops store.

Before a call the gateway reserves its worst-case cost against every budgeted scope in one
transaction that locks those scopes' counter rows; the call is refused if any hard limit would be
crossed by spent + reserved + this reservation. After the call the reservation is settled at the
actual cost (or released if the call failed). Because the check and the reservation happen under
the same row locks, concurrent calls in any number of processes cannot jointly overspend: total
spend can exceed a hard limit only if a call's actual cost exceeds its own worst case.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from agentprovision.config.schema import AdminConfig, Budget, TenantFile
from agentprovision.store.gateway_models import GatewayBudgetCounter, GatewayReservation
from agents.gateway.errors import BudgetExceeded

ZERO = Decimal(0)


@dataclass(frozen=True)
class BudgetScope:
    level: str  # platform, tenant, department, agent
    scope: str
    tenant_id: str | None
    budget: Budget


@dataclass(frozen=True)
class Crossing:
    """A threshold crossed for the first time this month; becomes one alert event."""

    kind: str  # budget_soft or budget_hard
    level: str
    scope: str
    tenant_id: str | None
    threshold: Decimal
    committed: Decimal
    month: str


def month_of(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m")


def budget_scopes(config: AdminConfig, tenant_file: TenantFile, department_id: str, agent_id: str) -> list[BudgetScope]:
    """The budgeted scopes of one call, outermost first (the lock order, so no deadlocks)."""
    tenant = tenant_file.tenant
    scopes = []
    platform_budget = config.platform.platform.budget
    if platform_budget is not None:
        scopes.append(BudgetScope("platform", "platform", None, platform_budget))
    scopes.append(BudgetScope("tenant", f"tenant:{tenant.id}", tenant.id, tenant.budget))
    department = next((d for d in tenant.departments if d.id == department_id), None)
    if department is not None and department.budget is not None:
        scopes.append(
            BudgetScope("department", f"department:{tenant.id}/{department_id}", tenant.id, department.budget)
        )
    agent = next((a for a in tenant_file.agents if a.id == agent_id), None)
    if agent is not None and agent.budget is not None:
        scopes.append(BudgetScope("agent", f"agent:{agent_id}", tenant.id, agent.budget))
    return scopes


class BudgetLedger:
    """Reserve, settle and release against budget counters; every method runs inside the caller's transaction."""

    def reserve(
        self,
        session: Session,
        scopes: list[BudgetScope],
        amount: Decimal,
        *,
        tenant_id: str,
        department_id: str,
        agent_id: str,
        run_id: str | None,
        now: datetime,
    ) -> str:
        """Hold `amount` against every scope and return the reservation id, or raise BudgetExceeded
        naming the outermost scope that refuses."""
        month = month_of(now)
        counters = [self._lock(session, scope, month) for scope in scopes]
        for scope, counter in zip(scopes, counters, strict=True):
            committed = counter.spent_usd + counter.reserved_usd
            if committed + amount > scope.budget.monthly_hard_usd:
                raise BudgetExceeded(scope.level, scope.scope, scope.budget.monthly_hard_usd, committed, amount, month)
        for counter in counters:
            counter.reserved_usd += amount
            counter.updated_at = now
        reservation_id = str(uuid.uuid4())
        session.add(
            GatewayReservation(
                reservation_id=reservation_id,
                tenant_id=tenant_id,
                department_id=department_id,
                agent_id=agent_id,
                run_id=run_id,
                month=month,
                scopes=" ".join(s.scope for s in scopes),
                reserved_usd=amount,
                status="reserved",
                created_at=now,
            )
        )
        return reservation_id

    def note_refusal(
        self, session: Session, error: BudgetExceeded, scopes: list[BudgetScope], now: datetime
    ) -> list[Crossing]:
        """Mark the refusing scope's hard alert as sent, once per month; returns the alert to emit, if due."""
        scope = next(s for s in scopes if s.scope == error.scope)
        counter = self._lock(session, scope, error.month)
        if counter.hard_alerted_at is not None:
            return []
        counter.hard_alerted_at = now
        return [
            Crossing(
                "budget_hard", scope.level, scope.scope, scope.tenant_id, error.limit, error.committed, error.month
            )
        ]

    def settle(
        self, session: Session, reservation_id: str, actual: Decimal, scopes: list[BudgetScope], now: datetime
    ) -> list[Crossing]:
        """Replace the reservation by the actual cost; returns soft thresholds crossed for the first time."""
        reservation = session.get(GatewayReservation, reservation_id, with_for_update=True)
        if reservation is None or reservation.status != "reserved":
            return []  # already settled or released (e.g. by the stale sweep): never count twice
        crossings = []
        by_scope = {s.scope: s for s in scopes}
        for scope_key in reservation.scopes.split():
            scope = by_scope.get(scope_key)
            counter = session.get(GatewayBudgetCounter, (scope_key, reservation.month), with_for_update=True)
            if counter is None:
                continue
            counter.reserved_usd = max(ZERO, counter.reserved_usd - reservation.reserved_usd)
            counter.spent_usd += actual
            counter.updated_at = now
            soft = scope.budget.monthly_soft_usd if scope is not None else None
            if soft is not None and counter.soft_alerted_at is None and counter.spent_usd >= soft:
                counter.soft_alerted_at = now
                crossings.append(
                    Crossing(
                        "budget_soft",
                        scope.level,
                        scope_key,
                        scope.tenant_id,
                        soft,
                        counter.spent_usd,
                        reservation.month,
                    )
                )
        reservation.status, reservation.actual_usd, reservation.closed_at = "settled", actual, now
        return crossings

    def release(self, session: Session, reservation_id: str, now: datetime) -> None:
        reservation = session.get(GatewayReservation, reservation_id, with_for_update=True)
        if reservation is None or reservation.status != "reserved":
            return
        self._unreserve(session, reservation, now)
        reservation.status, reservation.actual_usd, reservation.closed_at = "released", ZERO, now

    def release_stale(self, session: Session, older_than: timedelta, now: datetime) -> int:
        """Release reservations whose process died before settling; returns how many."""
        stale = session.scalars(
            select(GatewayReservation)
            .where(GatewayReservation.status == "reserved", GatewayReservation.created_at < now - older_than)
            .with_for_update()
        ).all()
        for reservation in stale:
            self._unreserve(session, reservation, now)
            reservation.status, reservation.actual_usd, reservation.closed_at = "released", ZERO, now
        return len(stale)

    def spent(self, session: Session, scope: str, month: str) -> tuple[Decimal, Decimal]:
        counter = session.get(GatewayBudgetCounter, (scope, month))
        return (ZERO, ZERO) if counter is None else (counter.spent_usd, counter.reserved_usd)

    def _unreserve(self, session: Session, reservation: GatewayReservation, now: datetime) -> None:
        for scope_key in reservation.scopes.split():
            counter = session.get(GatewayBudgetCounter, (scope_key, reservation.month), with_for_update=True)
            if counter is not None:
                counter.reserved_usd = max(ZERO, counter.reserved_usd - reservation.reserved_usd)
                counter.updated_at = now

    @staticmethod
    def _lock(session: Session, scope: BudgetScope, month: str) -> GatewayBudgetCounter:
        key = (scope.scope, month)
        counter = session.get(GatewayBudgetCounter, key, with_for_update=True, populate_existing=True)
        if counter is not None:
            return counter
        insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
        session.execute(
            insert(GatewayBudgetCounter)
            .values(
                scope=scope.scope,
                month=month,
                tenant_id=scope.tenant_id,
                level=scope.level,
                spent_usd=ZERO,
                reserved_usd=ZERO,
                updated_at=datetime.now(UTC),
            )
            .on_conflict_do_nothing()
        )
        counter = session.get(GatewayBudgetCounter, key, with_for_update=True, populate_existing=True)
        assert counter is not None  # just inserted, or inserted by a concurrent transaction we waited for
        return counter
