"""Monthly budgets, platform > tenant > department > agent, enforced by reservations in the ops store.

Before a call the gateway reserves its worst-case cost against every budgeted scope; the call is
refused if any hard limit would be crossed by spent + reserved + this reservation. After the call
the reservation is settled at the actual cost (or released if the call failed).

The reservation is one conditional UPDATE per scope:

    UPDATE gateway_budget_counters SET reserved_usd = reserved_usd + :amount
    WHERE scope = :scope AND month = :month AND spent_usd + reserved_usd + :amount <= :hard

The check and the increment are one statement on one row, so the database does both under the row
lock the UPDATE takes: PostgreSQL re-evaluates the WHERE clause against the newest committed row
after waiting for a concurrent writer (READ COMMITTED's re-check), and SQLite runs the whole
transaction under BEGIN IMMEDIATE. Concurrent calls in any number of processes therefore cannot
jointly overspend: total spend can exceed a hard limit only if a call's actual cost exceeds its own
worst case. Scopes are updated outermost first in every transaction, so row locks are always taken
in the same order and two reservations cannot deadlock. If any scope refuses, the caller's
transaction rolls back the scopes already incremented.

Only the refusal path (and the first call of a month, which creates the counter row) reads rows:
it locks the counter, re-checks, and either reserves after all (another call settled meanwhile) or
raises BudgetExceeded with numbers that were true under the lock.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import Connection, Engine, and_, bindparam, case, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from agentprovision.config.schema import AdminConfig, Budget, TenantFile
from agentprovision.store.gateway_models import GatewayBudgetCounter, GatewayReservation
from agentprovision.store.models import Money
from agents.gateway.errors import BudgetExceeded
from agents.gateway.ledger import LedgerStatement, LedgerTransaction, ledger_transaction, money

ZERO = Decimal(0)

# Statements are built once and compiled once per dialect (see ledger.py).
_COUNTERS = GatewayBudgetCounter.__table__
_RESERVATIONS = GatewayReservation.__table__
_C = _COUNTERS.c
_R = _RESERVATIONS.c
_THIS_COUNTER = and_(_C.scope == bindparam("p_scope"), _C.month == bindparam("p_month"))
_AMOUNT = bindparam("amount", type_=Money)

_RESERVE = LedgerStatement(
    update(_COUNTERS)
    .where(_THIS_COUNTER, _C.spent_usd + _C.reserved_usd + _AMOUNT <= bindparam("hard", type_=Money))
    .values(reserved_usd=_C.reserved_usd + _AMOUNT, updated_at=bindparam("now"))
)
_RESERVE_LOCKED = LedgerStatement(
    update(_COUNTERS).where(_THIS_COUNTER).values(reserved_usd=_C.reserved_usd + _AMOUNT, updated_at=bindparam("now"))
)
_READ_LOCKED = LedgerStatement(select(_C.spent_usd, _C.reserved_usd).where(_THIS_COUNTER).with_for_update())
_READ = select(_C.spent_usd, _C.reserved_usd).where(_THIS_COUNTER)
_INSERT_RESERVATION = LedgerStatement(
    _RESERVATIONS.insert().values(
        reservation_id=bindparam("rid"),
        tenant_id=bindparam("v_tenant"),
        department_id=bindparam("v_department"),
        agent_id=bindparam("v_agent"),
        run_id=bindparam("v_run"),
        month=bindparam("p_month"),
        scopes=bindparam("v_scopes"),
        reserved_usd=_AMOUNT,
        status="reserved",
        created_at=bindparam("now"),
    )
)


def _counter_insert(dialect_insert: object) -> LedgerStatement:
    """Create a scope's counter row for a month unless another transaction just did."""
    return LedgerStatement(
        dialect_insert(_COUNTERS)  # type: ignore[operator]
        .values(
            scope=bindparam("p_scope"),
            month=bindparam("p_month"),
            tenant_id=bindparam("v_tenant"),
            level=bindparam("v_level"),
            spent_usd=0,
            reserved_usd=0,
            updated_at=bindparam("now"),
        )
        .on_conflict_do_nothing()
    )


_CREATE_COUNTER = {"postgresql": _counter_insert(postgresql.insert), "sqlite": _counter_insert(sqlite.insert)}


def _unreserved(amount: object) -> object:
    """reserved_usd minus `amount`, never below zero (rounding must not leave a negative hold)."""
    remaining = _C.reserved_usd - amount
    return case((remaining < 0, 0), else_=remaining)


_SETTLE_COUNTER = LedgerStatement(
    update(_COUNTERS)
    .where(_THIS_COUNTER)
    .values(
        reserved_usd=_unreserved(_AMOUNT),
        spent_usd=_C.spent_usd + bindparam("actual", type_=Money),
        updated_at=bindparam("now"),
    )
    .returning(_C.spent_usd, _C.soft_alerted_at)
)
_UNRESERVE_COUNTER = LedgerStatement(
    update(_COUNTERS).where(_THIS_COUNTER).values(reserved_usd=_unreserved(_AMOUNT), updated_at=bindparam("now"))
)
_MARK_SOFT = LedgerStatement(
    update(_COUNTERS).where(_THIS_COUNTER, _C.soft_alerted_at.is_(None)).values(soft_alerted_at=bindparam("now"))
)
_MARK_HARD = LedgerStatement(
    update(_COUNTERS).where(_THIS_COUNTER, _C.hard_alerted_at.is_(None)).values(hard_alerted_at=bindparam("now"))
)
_STALE = LedgerStatement(
    select(_R.reservation_id, _R.month, _R.reserved_usd, _R.scopes).where(
        _R.status == "reserved", _R.created_at < bindparam("cutoff", type_=_R.created_at.type)
    )
)


def _close_reservation(from_status: str, to_status: str) -> LedgerStatement:
    return LedgerStatement(
        update(_RESERVATIONS)
        .where(_R.reservation_id == bindparam("rid"), _R.status == from_status)
        .values(status=to_status, actual_usd=bindparam("actual", type_=Money), closed_at=bindparam("now"))
    )


_SETTLE_RESERVED = _close_reservation("reserved", "settled")
_SETTLE_RELEASED = _close_reservation("released", "settled")  # released by the stale sweep, then answered
_RELEASE_RESERVED = _close_reservation("reserved", "released")


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


@dataclass(frozen=True)
class Reservation:
    """What one call holds: settled or released with exactly these scopes, month and amount."""

    reservation_id: str
    month: str
    amount: Decimal
    scopes: tuple[BudgetScope, ...]


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
        tx: LedgerTransaction,
        scopes: list[BudgetScope] | tuple[BudgetScope, ...],
        amount: Decimal,
        *,
        tenant_id: str,
        department_id: str,
        agent_id: str,
        run_id: str | None,
        now: datetime,
    ) -> Reservation:
        """Hold `amount` against every scope, or raise BudgetExceeded naming the outermost scope that refuses."""
        month = month_of(now)
        for scope in scopes:
            params = {
                "p_scope": scope.scope,
                "p_month": month,
                "amount": amount,
                "hard": scope.budget.monthly_hard_usd,
                "now": now,
            }
            if tx.execute(_RESERVE, params) != 1:
                self._reserve_slowly(tx, scope, month, amount, now)
        reservation = Reservation(str(uuid.uuid4()), month, amount, tuple(scopes))
        tx.execute(
            _INSERT_RESERVATION,
            {
                "rid": reservation.reservation_id,
                "v_tenant": tenant_id,
                "v_department": department_id,
                "v_agent": agent_id,
                "v_run": run_id,
                "p_month": month,
                "v_scopes": " ".join(s.scope for s in scopes),
                "amount": amount,
                "now": now,
            },
        )
        return reservation

    def note_refusal(
        self, tx: LedgerTransaction, error: BudgetExceeded, scopes: list[BudgetScope], now: datetime
    ) -> list[Crossing]:
        """Mark the refusing scope's hard alert as sent, once per month; returns the alert to emit, if due."""
        scope = next(s for s in scopes if s.scope == error.scope)
        if tx.execute(_MARK_HARD, {"p_scope": scope.scope, "p_month": error.month, "now": now}) != 1:
            return []
        return [
            Crossing(
                "budget_hard", scope.level, scope.scope, scope.tenant_id, error.limit, error.committed, error.month
            )
        ]

    def settle(self, tx: LedgerTransaction, reservation: Reservation, actual: Decimal, now: datetime) -> list[Crossing]:
        """Replace the reservation by the actual cost; returns soft thresholds crossed for the first time."""
        closing = {"rid": reservation.reservation_id, "actual": actual, "now": now}
        held = reservation.amount
        if tx.execute(_SETTLE_RESERVED, closing) != 1:
            # The stale sweep released it (this process looked dead): the hold is gone, but the
            # tokens were spent, so the spend still counts. Anything else was settled already.
            if tx.execute(_SETTLE_RELEASED, closing) != 1:
                return []
            held = ZERO
        crossings = []
        for scope in reservation.scopes:
            row = tx.first(
                _SETTLE_COUNTER,
                {"p_scope": scope.scope, "p_month": reservation.month, "amount": held, "actual": actual, "now": now},
            )
            soft = scope.budget.monthly_soft_usd
            if row is None or soft is None or row[1] is not None or money(row[0]) < soft:
                continue
            marked = tx.execute(_MARK_SOFT, {"p_scope": scope.scope, "p_month": reservation.month, "now": now})
            if marked == 1:  # this call crossed first, in whichever process
                spent = money(row[0])
                crossings.append(
                    Crossing("budget_soft", scope.level, scope.scope, scope.tenant_id, soft, spent, reservation.month)
                )
        return crossings

    def release(self, tx: LedgerTransaction, reservation: Reservation, now: datetime) -> None:
        if tx.execute(_RELEASE_RESERVED, {"rid": reservation.reservation_id, "actual": ZERO, "now": now}) != 1:
            return  # already released by the stale sweep
        for scope in reservation.scopes:
            tx.execute(
                _UNRESERVE_COUNTER,
                {"p_scope": scope.scope, "p_month": reservation.month, "amount": reservation.amount, "now": now},
            )

    def spent(self, connection: Connection | Session, scope: str, month: str) -> tuple[Decimal, Decimal]:
        """Spent and reserved of one scope and month, read through SQLAlchemy (any Session or Connection)."""
        row = connection.execute(_READ, {"p_scope": scope, "p_month": month}).first()
        return (ZERO, ZERO) if row is None else (row.spent_usd, row.reserved_usd)

    def _reserve_slowly(
        self, tx: LedgerTransaction, scope: BudgetScope, month: str, amount: Decimal, now: datetime
    ) -> None:
        """The conditional UPDATE matched nothing: no counter row yet, or the limit refuses. Decide under the lock."""
        key = {"p_scope": scope.scope, "p_month": month}
        row = tx.first(_READ_LOCKED, key)
        if row is None:
            created = {**key, "v_tenant": scope.tenant_id, "v_level": scope.level, "now": now}
            tx.execute(_CREATE_COUNTER[tx.dialect.name], created)
            row = tx.first(_READ_LOCKED, key)
            assert row is not None  # just inserted, or inserted by a concurrent transaction we waited for
        committed = money(row[0]) + money(row[1])
        limit = scope.budget.monthly_hard_usd
        if committed + amount > limit:
            raise BudgetExceeded(scope.level, scope.scope, limit, committed, amount, month)
        tx.execute(_RESERVE_LOCKED, {**key, "amount": amount, "now": now})


def release_stale_reservations(engine: Engine, older_than: timedelta, now: datetime | None = None) -> int:
    """Release reservations older than `older_than` that were never settled (their process died).

    A plain function so any scheduler can run it (the gateway default is
    `platform.gateway.stale_reservation_minutes`). Safe to run while gateways are serving: each
    reservation is closed by a conditional UPDATE, so a call that settles at the same moment either
    wins (and the sweep skips it) or loses (and its spend is still counted by `settle`).
    Under PostgreSQL row-level security it needs the platform role: reservations of every tenant
    and the platform counter row are touched. Returns how many reservations were released.
    """
    now = now or datetime.now(UTC)
    with ledger_transaction(engine) as tx:
        stale = tx.all(_STALE, {"cutoff": now - older_than})
    released = 0
    for reservation_id, month, reserved, scopes in stale:
        # One transaction per reservation: a long sweep never holds many counter locks at once.
        with ledger_transaction(engine) as tx:
            if tx.execute(_RELEASE_RESERVED, {"rid": reservation_id, "actual": ZERO, "now": now}) != 1:
                continue  # settled or released meanwhile
            for scope_key in scopes.split():
                tx.execute(
                    _UNRESERVE_COUNTER, {"p_scope": scope_key, "p_month": month, "amount": money(reserved), "now": now}
                )
            released += 1
    return released
