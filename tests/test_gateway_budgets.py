"""Budgets and rate limits in the ops store, on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import faulthandler
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest
from gateway_support import budget_worker, deployment, rate_worker, request, tenant, write_config
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import DBAPIError

from agentprovision.store.db import make_engine, migrate
from agentprovision.store.gateway_models import GatewayBudgetCounter, GatewayRateWindow, GatewayReservation
from agentprovision.store.models import Event
from agents.gateway import BudgetExceeded, Gateway, RateLimited
from agents.gateway.budgets import release_stale_reservations
from governance.tenancy import app_engine_url, grant_app_login

MODELS = [deployment("sandbox-basic", tier="basic")]  # 2 USD in, 8 USD out per Mtok
T = TypeVar("T")


def _events(engine: Engine, kind: str, name: str | None = None) -> list[Event]:
    with engine.connect() as connection:
        query = select(Event).where(Event.kind == kind).order_by(Event.seq)
        if name:
            query = query.where(Event.name == name)
        return list(connection.execute(query))


class Clock:
    def __init__(self, moment: datetime):
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment


def test_the_hard_limit_refuses_naming_the_level_and_the_numbers(store: Engine, tmp_path: Path) -> None:
    body = tenant("acme", hard=10, agent_budget={"monthly_hard_usd": 0.009})
    config = write_config(tmp_path / "c", MODELS, [body])
    gateway = Gateway(config, store)
    # One call's worst case is just over 0.008 USD (1000 output tokens at 8 USD/Mtok) and its actual
    # cost a few hundredths of a cent, so a handful run before spent + worst case passes 0.009.
    ran = 0
    with pytest.raises(BudgetExceeded) as refused:
        for _ in range(20):
            gateway.complete(request("acme", max_tokens=1000))
            ran += 1
    assert ran >= 2
    with pytest.raises(BudgetExceeded):
        gateway.complete(request("acme", max_tokens=1000))
    gateway.close()
    error = refused.value
    assert (error.level, error.scope, error.limit) == ("agent", "agent:acme-agent", Decimal("0.009"))
    assert f"hard limit {error.limit:.6f} USD" in str(error) and f"{error.needed:.6f}" in str(error)
    assert error.committed + error.needed > error.limit >= error.committed
    refusals = [e for e in _events(store, "policy", "budget") if e.payload["decision"] == "refused"]
    assert len(refusals) == 2 and refusals[0].payload["level"] == "agent"
    assert len(_events(store, "alert", "budget_hard")) == 1  # once per scope and month, not per refusal
    assert len(_events(store, "usage")) == ran  # refused calls never reached the provider


def test_department_and_platform_levels_are_enforced(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'ops.db'}")
    migrate(engine)
    body = tenant("acme", hard=10, department_budget={"monthly_hard_usd": 0.005})
    gateway = Gateway(write_config(tmp_path / "c", MODELS, [body]), engine)
    with pytest.raises(BudgetExceeded, match="department budget exceeded for department:acme/ops"):
        gateway.complete(request("acme", max_tokens=1000))
    config = write_config(
        tmp_path / "p", MODELS, [tenant("acme", hard=0.004)], platform_budget={"monthly_hard_usd": 0.004}
    )
    with pytest.raises(BudgetExceeded, match="platform budget exceeded for platform"):
        Gateway(config, engine).complete(request("acme", max_tokens=1000))


def test_soft_threshold_alerts_once_and_budgets_reset_each_calendar_month(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'ops.db'}")
    migrate(engine)
    clock = Clock(datetime(2026, 3, 31, 23, 0, tzinfo=UTC))
    config = write_config(tmp_path / "c", MODELS, [tenant("acme", hard=0.009, soft=0.0001)])
    gateway = Gateway(config, engine, clock=clock)
    for _ in range(2):
        gateway.complete(request("acme", max_tokens=1000))
    with pytest.raises(BudgetExceeded, match="in 2026-03"):
        for _ in range(20):
            gateway.complete(request("acme", max_tokens=1000))
    clock.moment = datetime(2026, 4, 1, 0, 5, tzinfo=UTC)
    gateway.complete(request("acme", max_tokens=1000))  # a new month, a fresh budget
    gateway.close()
    soft = _events(engine, "alert", "budget_soft")
    assert [(e.payload["scope"], e.payload["month"]) for e in soft] == [
        ("tenant:acme", "2026-03"),
        ("tenant:acme", "2026-04"),
    ]


def test_stale_reservations_of_a_dead_process_are_released(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'ops.db'}")
    migrate(engine)
    clock = Clock(datetime(2026, 5, 1, 12, 0, tzinfo=UTC))
    gateway = Gateway(write_config(tmp_path / "c", MODELS, [tenant("acme", hard=0.01)]), engine, clock=clock)
    call = gateway._prepare(request("acme", max_tokens=1000), span=_NoSpan())
    gateway._admit(call, span=_NoSpan())  # reserved, then the "process" dies before calling
    with pytest.raises(BudgetExceeded):
        gateway.complete(request("acme", max_tokens=1000))
    clock.moment += timedelta(minutes=31)
    assert gateway.release_stale_reservations() == 1
    gateway.complete(request("acme", max_tokens=1000))


def test_release_stale_reservations_is_a_plain_function_and_a_late_answer_still_counts(
    store: Engine, tmp_path: Path
) -> None:
    start = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
    gateway = Gateway(write_config(tmp_path / "c", MODELS, [tenant("acme", hard=1)]), store, clock=Clock(start))
    crashed = gateway._prepare(request("acme", max_tokens=1000), span=_NoSpan())
    gateway._admit(crashed, span=_NoSpan())
    slow = gateway._prepare(request("acme", max_tokens=1000), span=_NoSpan())
    gateway._admit(slow, span=_NoSpan())
    assert crashed.reservation is not None and slow.reservation is not None
    held = crashed.reservation.amount + slow.reservation.amount
    assert _counter(store, "tenant:acme", "2026-06") == (Decimal(0), held)

    # Younger than the threshold: nothing is touched.
    assert release_stale_reservations(store, timedelta(minutes=30), now=start + timedelta(minutes=29)) == 0
    # Older: both holds go (the sweep cannot tell a crashed process from a very slow call).
    assert release_stale_reservations(store, timedelta(minutes=30), now=start + timedelta(minutes=31)) == 2
    assert _counter(store, "tenant:acme", "2026-06") == (Decimal(0), Decimal(0))
    assert release_stale_reservations(store, timedelta(minutes=30), now=start + timedelta(minutes=32)) == 0

    # The slow call answers after all: its spend is counted, its (already released) hold is not released twice.
    with gateway._store() as connection:
        gateway.budgets.settle(connection, slow.reservation, Decimal("0.004"), start + timedelta(minutes=33))
        gateway.budgets.settle(connection, slow.reservation, Decimal("0.004"), start + timedelta(minutes=34))
    assert _counter(store, "tenant:acme", "2026-06") == (Decimal("0.004"), Decimal(0))
    with store.connect() as connection:
        statuses = dict(connection.execute(select(GatewayReservation.reservation_id, GatewayReservation.status)).all())
    assert statuses == {crashed.reservation.reservation_id: "released", slow.reservation.reservation_id: "settled"}
    gateway.close()


def _counter(engine: Engine, scope: str, month: str) -> tuple[Decimal, Decimal]:
    with engine.connect() as connection:
        row = connection.execute(
            select(GatewayBudgetCounter.spent_usd, GatewayBudgetCounter.reserved_usd).where(
                GatewayBudgetCounter.scope == scope, GatewayBudgetCounter.month == month
            )
        ).one()
    return Decimal(row.spent_usd), Decimal(row.reserved_usd)


class _NoSpan:
    def update_name(self, _name: str) -> None: ...
    def set_attributes(self, _attributes: dict) -> None: ...
    def set_attribute(self, _key: str, _value: object) -> None: ...
    def set_status(self, _status: object) -> None: ...
    def get_span_context(self):  # type: ignore[no-untyped-def]
        from opentelemetry.trace import INVALID_SPAN_CONTEXT

        return INVALID_SPAN_CONTEXT


def test_rpm_and_tpm_limits_hold_across_gateways_sharing_the_store(
    store: Engine, store_url: str, tmp_path: Path
) -> None:
    body = tenant("acme", rate_limits={"tpm": 100_000}, agent_limits={"rpm": 3})
    config = write_config(tmp_path / "c", MODELS, [body])
    other_engine = make_engine(store_url)  # a second connection pool, as a second process would have
    first, second = Gateway(config, store), Gateway(config, other_engine)
    first.complete(request("acme", max_tokens=100))
    second.complete(request("acme", max_tokens=100))
    first.complete(request("acme", max_tokens=100))
    with pytest.raises(RateLimited, match=r"rpm limit reached for agent:acme-agent: 3 requests per minute") as error:
        second.complete(request("acme", max_tokens=100))
    assert 0 < error.value.retry_after <= 61
    tpm_gateway = Gateway(write_config(tmp_path / "t", MODELS, [tenant("acme", rate_limits={"tpm": 500})]), store)
    with pytest.raises(RateLimited, match="tpm limit reached for tenant:acme: 500 tokens per minute"):
        tpm_gateway.complete(request("acme", max_tokens=1000))  # prompt + 1000 cannot fit in 500
    tpm_gateway.close()
    first.close()
    second.close()
    other_engine.dispose()
    assert sorted(e.payload["limit_kind"] for e in _events(store, "policy", "rate_limit")) == ["rpm", "tpm"]


def in_two_processes(worker: Callable[..., T], *args: Any) -> list[T]:
    """`worker(*args)` in two fresh processes at once. A process that dies fails the test at once with
    BrokenProcessPool (a multiprocessing.Pool would wait for its lost task forever); faulthandler makes
    a native crash print its stack."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=context, initializer=faulthandler.enable) as pool:
        return list(pool.map(worker, *([arg, arg] for arg in args), timeout=300))


def test_200_concurrent_calls_from_2_processes_never_overspend(store: Engine, store_url: str, tmp_path: Path) -> None:
    hard = Decimal("0.5")
    config_dir = tmp_path / "c"
    # Dear tokens and a small max_tokens: the worst case (~0.017 USD) is close to the actual cost
    # (~0.011 USD), so spend really climbs to the limit rather than reservations alone refusing.
    dear = deployment("sandbox-dear", tier="basic", price={"input_per_mtok_usd": 100, "output_per_mtok_usd": 400})
    write_config(config_dir, [dear], [tenant("acme", hard=float(hard))])
    max_tokens = 40
    outcomes = in_two_processes(budget_worker, str(config_dir), store_url, 100, max_tokens)
    ok = sum(o["ok"] for o in outcomes)
    refused = sum(o["refused"] for o in outcomes)
    assert ok + refused == 200
    assert ok > 0 and refused > 0  # the limit was really reached

    with store.connect() as connection:
        settled = connection.execute(
            select(
                func.count(), func.sum(GatewayReservation.actual_usd), func.max(GatewayReservation.reserved_usd)
            ).where(GatewayReservation.status == "settled")
        ).one()
        counter = connection.execute(
            select(GatewayBudgetCounter).where(GatewayBudgetCounter.scope == "tenant:acme")
        ).one()
        open_reservations = connection.scalar(
            select(func.count()).select_from(GatewayReservation).where(GatewayReservation.status == "reserved")
        )
    count, spent, worst_case = settled
    print(f"budget: {ok} calls ran, {refused} refused; spent {spent} of {hard} (worst case per call {worst_case})")
    assert count == ok
    assert Decimal(str(spent)) <= hard + Decimal(str(worst_case))
    assert Decimal(str(spent)) <= hard  # in fact never over: actual cost never exceeds the reserved worst case
    assert Decimal(str(counter.spent_usd)) == pytest.approx(Decimal(str(spent)))
    assert counter.reserved_usd == 0 and open_reservations == 0
    # every call that reached the provider was admitted under the limit first: one usage event per settled call
    assert len(_events(store, "usage")) == ok
    # and every refusal was the hard limit speaking: spent + reserved + this call's worst case > limit
    refusals = [e.payload for e in _events(store, "policy", "budget") if e.payload["decision"] == "refused"]
    assert len(refusals) == refused
    assert all(Decimal(r["committed_usd"]) + Decimal(r["needed_usd"]) > hard for r in refusals)


def test_rpm_and_tpm_hold_across_two_processes_per_tenant_and_per_agent(
    store: Engine, store_url: str, tmp_path: Path
) -> None:
    config_dir = tmp_path / "c"
    write_config(
        config_dir,
        MODELS,
        [
            tenant("alpha", rate_limits={"rpm": 25}),  # tenant-wide requests per minute
            tenant("beta", agent_limits={"rpm": 9}),  # one agent's requests per minute
            tenant("gamma", rate_limits={"tpm": 1_000}),  # tenant-wide tokens per minute
        ],
    )
    moment = "2026-07-01T10:00:30+00:00"  # both processes count in the same minute
    outcomes = in_two_processes(rate_worker, str(config_dir), store_url, 20, moment)
    total = {t: {k: sum(o[t][k] for o in outcomes) for k in ("ok", "rpm", "tpm")} for t in ("alpha", "beta", "gamma")}
    print(f"rate limits across 2 processes: {total}")
    # 40 requests each; exactly the limit got through, whichever process asked.
    assert total["alpha"] == {"ok": 25, "rpm": 15, "tpm": 0}
    assert total["beta"] == {"ok": 9, "rpm": 31, "tpm": 0}
    assert total["gamma"]["ok"] + total["gamma"]["tpm"] == 40 and total["gamma"]["rpm"] == 0
    assert total["gamma"]["ok"] >= 1000 // (50 + 20) and total["gamma"]["tpm"] > 0

    window = int(datetime.fromisoformat(moment).timestamp() // 60)
    with store.connect() as connection:
        rows = {
            r.scope: r
            for r in connection.execute(select(GatewayRateWindow).where(GatewayRateWindow.window_start == window))
        }
    assert rows["tenant:alpha"].requests == 25 and rows["agent:beta-agent"].requests == 9
    # Tokens were admitted at their worst case and corrected to the real count: never over the limit.
    assert rows["tenant:gamma"].requests == total["gamma"]["ok"] and 0 < rows["tenant:gamma"].tokens <= 1_000
    refusals = [e.payload for e in _events(store, "policy", "rate_limit")]
    assert sorted({(r["scope"], r["limit_kind"]) for r in refusals}) == [
        ("agent:beta-agent", "rpm"),
        ("tenant:alpha", "rpm"),
        ("tenant:gamma", "tpm"),
    ]
    assert len(refusals) == 15 + 31 + total["gamma"]["tpm"]


@pytest.mark.postgres
def test_under_row_level_security_the_gateway_ledger_runs_as_the_platform_role(
    postgres_url: str, tmp_path: Path
) -> None:
    """The platform budget row has no tenant, so only the platform role may read or write it; a
    connection with only the tenant-scoped app role fails closed instead of skipping the platform limit."""
    owner = make_engine(postgres_url)
    migrate(owner)
    grant_app_login(owner, "ap_test_gateway_platform", platform=True)
    grant_app_login(owner, "ap_test_gateway_app")
    config = write_config(
        tmp_path / "c",
        MODELS,
        [tenant("acme", hard=10)],
        platform_budget={"monthly_hard_usd": 50, "monthly_soft_usd": 0.000001},
    )
    platform = make_engine(app_engine_url(postgres_url, "ap_test_gateway_platform"))
    app = make_engine(app_engine_url(postgres_url, "ap_test_gateway_app"))
    try:
        gateway = Gateway(config, platform)
        result = gateway.complete(request("acme", max_tokens=100))
        assert gateway.release_stale_reservations() == 0  # the sweep sees every tenant's reservations
        gateway.close()
        with owner.connect() as connection:
            counters = dict(
                connection.execute(select(GatewayBudgetCounter.scope, GatewayBudgetCounter.spent_usd)).all()
            )
            soft = connection.execute(select(Event.tenant_id, Event.payload).where(Event.name == "budget_soft")).one()
        assert counters == {"platform": result.cost_usd, "tenant:acme": result.cost_usd}
        assert soft.tenant_id is None and soft.payload["scope"] == "platform"  # a platform alert, no tenant

        refused = Gateway(config, app)
        with pytest.raises(DBAPIError, match="row-level security"):
            refused.complete(request("acme", max_tokens=100))
        with owner.connect() as connection:  # nothing of the failed admission stayed behind
            assert connection.scalar(select(func.count()).select_from(GatewayReservation)) == 1
    finally:
        for engine in (app, platform, owner):
            engine.dispose()
