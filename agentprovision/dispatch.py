"""Deciding which tenants get agent-work runs now, and refusing work their hard budgets cannot pay for.

The dispatch sensor asks `plan_dispatch` once per tick. The rules, in order:

- Fairness: tenants are served oldest-waiting first (by their oldest queued task), each tenant has
  at most `per_tenant_runs` dispatch runs in flight (one by default), and a run carries at most
  `batch_size` tasks. A tenant with thousands of queued tasks therefore gets one bounded run per
  turn, never the whole machine; inside that run its tasks execute concurrently up to its plan's
  `max_concurrent_runs` (the agent runtime applies the same cap).
- A global limit on dispatch runs in flight across all tenants; tenants past it wait for the next
  tick, keeping their place in the order because their oldest task only gets older.
- Budget: before a task is handed to a run, every budget scope it would spend against (platform,
  tenant, department, agent; the gateway's own scopes) must have room for the task's estimated
  cost after the month's settled spend, open reservations and the tasks already planned in this
  tick. A task that does not fit is refused: marked `refused` with the reason as its outcome, and a
  `policy` event named `dispatch_refused` records the scope and the figures. Refused tasks are not
  left queued: queued work that silently runs weeks later when a new month frees budget would be a
  surprise, and the trigger or schedule that queued it will queue new work when it is due again.

A task's estimated cost is the average cost of its agent's recent finished runs, with a small
floor so an agent with no history still needs some room. The gateway's per-call reservations remain
the hard guarantee; this check only avoids launching runs that are certain to be refused.

Plain Python over the ops store: no Dagster here (the sensor in orchestration/ is the caller).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from croniter import croniter
from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from agentprovision.apply import current_version
from agentprovision.config.schema import AdminConfig, TenantFile
from agentprovision.events import PlatformEvent
from agentprovision.store.models import Agent, Event, Integration, Run, Task, Tenant
from agents.gateway.budgets import BudgetLedger, BudgetScope, budget_scopes, month_of

# An agent with no finished runs yet still needs this much room in every scope it spends against.
MIN_TASK_ESTIMATE_USD = Decimal("0.001")
# How many recent finished runs of an agent its cost estimate averages over.
ESTIMATE_WINDOW = 20
FINISHED_RUN_STATUSES = ("succeeded", "failed")
REFUSED_STATUS = "refused"


@dataclass(frozen=True)
class DispatchLimits:
    global_runs: int = 20  # dispatch runs in flight across all tenants
    per_tenant_runs: int = 1  # dispatch runs in flight per tenant
    batch_size: int = 50  # tasks per run

    def __post_init__(self) -> None:
        for name in ("global_runs", "per_tenant_runs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"dispatch limit {name} must be at least 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class Launch:
    """One run to start: these tasks of this tenant, at most `max_concurrency` at a time."""

    tenant_id: str
    task_ids: tuple[str, ...]
    max_concurrency: int


@dataclass(frozen=True)
class Refusal:
    tenant_id: str
    task_id: str
    agent_id: str
    scope: str
    level: str
    remaining_usd: Decimal
    estimate_usd: Decimal

    @property
    def reason(self) -> str:
        return (
            f"{self.level} budget {self.scope} has {self.remaining_usd:.6f} USD left this month; "
            f"a run of {self.agent_id} is estimated at {self.estimate_usd:.6f} USD"
        )


@dataclass
class DispatchPlan:
    launches: list[Launch] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    waiting: dict[str, str] = field(default_factory=dict)  # tenant -> why it got no run this tick

    def summary(self) -> str:
        tasks = sum(len(launch.task_ids) for launch in self.launches)
        return (
            f"{len(self.launches)} run(s) for {tasks} task(s), {len(self.refusals)} task(s) refused by budget, "
            f"{len(self.waiting)} tenant(s) waiting"
        )


@dataclass(frozen=True)
class _Queued:
    task_id: str
    tenant_id: str
    agent_id: str
    department_id: str


def plan_dispatch(
    session: Session,
    *,
    in_flight: Mapping[str, int],
    limits: DispatchLimits = DispatchLimits(),
    exclude: Iterable[str] = (),
    now: datetime | None = None,
) -> DispatchPlan:
    """Which tenants get a run now and with which tasks; which tasks their budgets refuse.

    `in_flight` counts dispatch runs not yet finished per tenant; `exclude` holds task ids already
    handed to a run that has not claimed them yet. Reads only; `record_refusals` writes.
    """
    now = now or datetime.now(UTC)
    plan = DispatchPlan()
    version = current_version(session)
    if version is None:
        return plan
    config = AdminConfig.model_validate(version.content)
    tenant_files = {tf.tenant.id: tf for tf in config.tenants}
    excluded = set(exclude)

    queued: dict[str, list[_Queued]] = defaultdict(list)
    rows = session.execute(
        select(Task.task_id, Task.tenant_id, Task.agent_id, Agent.department_id)
        .join(Agent, Agent.agent_id == Task.agent_id)
        .join(Tenant, Tenant.tenant_id == Task.tenant_id)
        .where(Task.status == "queued", Tenant.status == "active")
        .order_by(Task.created_at, Task.task_id)
    )
    for task_id, tenant_id, agent_id, department_id in rows:
        if task_id not in excluded and tenant_id in tenant_files:
            queued[tenant_id].append(_Queued(task_id, tenant_id, agent_id, department_id))

    free_global = limits.global_runs - sum(in_flight.values())
    room = _BudgetRoom(session, month_of(now))
    estimates = _CostEstimates(session)
    # Dicts keep insertion order, and tasks came oldest first: tenants are in oldest-waiting order.
    for tenant_id, tasks in queued.items():
        if in_flight.get(tenant_id, 0) >= limits.per_tenant_runs:
            plan.waiting[tenant_id] = "a run for this tenant is already in flight"
            continue
        if free_global <= 0:
            plan.waiting[tenant_id] = f"the global limit of {limits.global_runs} runs in flight is reached"
            continue
        tenant_file = tenant_files[tenant_id]
        accepted: list[str] = []
        for task in tasks:
            if len(accepted) >= limits.batch_size:
                break
            refusal = room.take(config, tenant_file, task, estimates.of(task.agent_id))
            if refusal is None:
                accepted.append(task.task_id)
            else:
                plan.refusals.append(refusal)
        if accepted:
            plan.launches.append(Launch(tenant_id, tuple(accepted), tenant_file.tenant.max_concurrent_runs))
            free_global -= 1
    return plan


class _BudgetRoom:
    """What each budget scope has left this month, less what this plan has already promised."""

    def __init__(self, session: Session, month: str):
        self._session, self._month = session, month
        self._left: dict[str, Decimal] = {}
        self._ledger = BudgetLedger()

    def _remaining(self, scope: BudgetScope) -> Decimal:
        if scope.scope not in self._left:
            spent, reserved = self._ledger.spent(self._session, scope.scope, self._month)
            self._left[scope.scope] = scope.budget.monthly_hard_usd - spent - reserved
        return self._left[scope.scope]

    def take(self, config: AdminConfig, tenant_file: TenantFile, task: _Queued, estimate: Decimal) -> Refusal | None:
        scopes = budget_scopes(config, tenant_file, task.department_id, task.agent_id)
        for scope in scopes:  # outermost first, so the refusal names the widest scope that is out
            left = self._remaining(scope)
            if left < estimate:
                return Refusal(task.tenant_id, task.task_id, task.agent_id, scope.scope, scope.level, left, estimate)
        for scope in scopes:
            self._left[scope.scope] -= estimate
        return None


class _CostEstimates:
    def __init__(self, session: Session):
        self._session = session
        self._cache: dict[str, Decimal] = {}

    def of(self, agent_id: str) -> Decimal:
        if agent_id not in self._cache:
            recent = (
                select(Run.cost_usd)
                .where(Run.agent_id == agent_id, Run.status.in_(FINISHED_RUN_STATUSES))
                .order_by(Run.started_at.desc())
                .limit(ESTIMATE_WINDOW)
                .subquery()
            )
            average = self._session.scalar(select(func.avg(recent.c.cost_usd)))
            self._cache[agent_id] = max(Decimal(str(average or 0)), MIN_TASK_ESTIMATE_USD)
        return self._cache[agent_id]


def record_refusals(session: Session, refusals: list[Refusal], now: datetime | None = None) -> int:
    """Mark refused tasks and write one policy event each, in the caller's transaction; returns tasks marked.

    Only tasks still queued are marked, so a task claimed meanwhile (a manual rerun) is left alone.
    """
    now = now or datetime.now(UTC)
    marked = 0
    events = []
    for refusal in refusals:
        changed = session.execute(
            update(Task)
            .where(Task.task_id == refusal.task_id, Task.status == "queued")
            .values(status=REFUSED_STATUS, finished_at=now, outcome=refusal.reason)
        ).rowcount
        if not changed:
            continue
        marked += 1
        events.append(
            PlatformEvent(
                tenant_id=refusal.tenant_id,
                kind="policy",
                name="dispatch_refused",
                occurred_at=now,
                agent_id=refusal.agent_id,
                payload={
                    "action": "refused",
                    "reason": "budget",
                    "detail": refusal.reason,
                    "task_id": refusal.task_id,
                    "scope": refusal.scope,
                    "level": refusal.level,
                    "remaining_usd": str(refusal.remaining_usd),
                    "estimate_usd": str(refusal.estimate_usd),
                },
            ).as_row()
        )
    if events:
        session.execute(insert(Event), events)
    return marked


def still_queued(session: Session, task_ids: Iterable[str]) -> set[str]:
    """The subset of these tasks that no run has claimed yet."""
    ids = list(task_ids)
    found: set[str] = set()
    for start in range(0, len(ids), 500):  # bounded IN lists
        chunk = ids[start : start + 500]
        found.update(session.scalars(select(Task.task_id).where(Task.task_id.in_(chunk), Task.status == "queued")))
    return found


# --- connector schedules -------------------------------------------------------------------------


@dataclass(frozen=True)
class DueSync:
    tenant_id: str
    integration_id: str
    scheduled_for: datetime

    @property
    def run_key(self) -> str:
        return f"sync:{self.tenant_id}/{self.integration_id}:{self.scheduled_for.isoformat()}"


def due_syncs(session: Session, since: datetime, until: datetime) -> Iterator[DueSync]:
    """The latest fire time in (since, until] of each scheduled integration of an active tenant.

    Several missed ticks of one integration collapse into one sync: a sync is incremental, so
    running it once catches up on everything the missed ones would have read.
    """
    rows = session.execute(
        select(Integration.tenant_id, Integration.integration_id, Integration.schedule)
        .join(Tenant, Tenant.tenant_id == Integration.tenant_id)
        .where(Integration.status == "active", Integration.schedule.is_not(None), Tenant.status == "active")
        .order_by(Integration.tenant_id, Integration.integration_id)
    )
    for tenant_id, integration_id, schedule in rows:
        fire_times = croniter(schedule, since.astimezone(UTC))
        latest = None
        while (fire := fire_times.get_next(datetime)) <= until:
            latest = fire
        if latest is not None:
            yield DueSync(tenant_id, integration_id, latest)
