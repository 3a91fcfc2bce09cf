"""The gateway's ledger thread: async callers' transactions batched into one commit, each job on its own."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from gateway_support import deployment, request, tenant, write_config
from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, bindparam, func, select

from agentprovision.store.gateway_models import GatewayBudgetCounter, GatewayReservation
from agents.gateway import Gateway
from agents.gateway.ledger import LedgerStatement, LedgerTransaction, LedgerWorker

NOTES = Table("ledger_worker_notes", MetaData(), Column("id", Integer, primary_key=True), Column("note", String(20)))
INSERT_NOTE = LedgerStatement(NOTES.insert().values(note=bindparam("note")))


class Refused(Exception):
    pass


def blocker(started: threading.Event, release: threading.Event):  # type: ignore[no-untyped-def]
    """A job that holds the worker until `release` is set, so the jobs queued meanwhile form one batch."""

    def work(_tx: LedgerTransaction) -> None:
        started.set()
        release.wait(10)

    return work


def test_a_refused_job_undoes_only_its_own_writes_and_the_batch_commits_once(store: Engine) -> None:
    NOTES.create(store)
    worker = LedgerWorker(store)

    def note(text: str, refuse: bool = False):  # type: ignore[no-untyped-def]
        def work(tx: LedgerTransaction) -> str:
            tx.execute(INSERT_NOTE, {"note": text})
            if refuse:
                raise Refused(text)
            return text

        return work

    async def scenario() -> list[object]:
        started, release = threading.Event(), threading.Event()
        first = asyncio.ensure_future(worker.run(blocker(started, release)))
        await asyncio.to_thread(started.wait, 10)
        queued = [asyncio.ensure_future(worker.run(note(t, refuse=t == "refused"))) for t in ("a", "refused", "b")]
        await asyncio.sleep(0.05)  # all three are queued behind the blocker
        release.set()
        await first
        return await asyncio.gather(*queued, return_exceptions=True)

    outcomes = asyncio.run(scenario())
    worker.close()
    assert outcomes[0] == "a" and outcomes[2] == "b"
    assert isinstance(outcomes[1], Refused)
    with store.connect() as connection:
        assert sorted(connection.scalars(select(NOTES.c.note))) == ["a", "b"]
    assert worker.batches == 2  # the blocker alone, then the three queued behind it together


def test_a_lone_failing_job_changes_nothing_and_its_caller_gets_the_error(store: Engine) -> None:
    NOTES.create(store)
    worker = LedgerWorker(store)

    def failing(tx: LedgerTransaction) -> None:
        tx.execute(INSERT_NOTE, {"note": "lost"})
        raise Refused("no")

    with pytest.raises(Refused):
        asyncio.run(worker.run(failing))
    worker.close()
    with store.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(NOTES)) == 0


def test_a_call_cancelled_while_its_reservation_is_queued_gives_it_back(store: Engine, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c", [deployment("sandbox-basic", tier="basic")], [tenant("acme", hard=10)])
    gateway = Gateway(config, store)

    async def scenario() -> None:
        started, release = threading.Event(), threading.Event()
        held = asyncio.ensure_future(gateway._ledger.run(blocker(started, release)))
        await asyncio.to_thread(started.wait, 10)
        call = asyncio.ensure_future(gateway.acomplete(request("acme", max_tokens=100)))
        await asyncio.sleep(0.05)  # the call's reservation is queued behind the blocker
        call.cancel()
        release.set()
        await held
        with pytest.raises(asyncio.CancelledError):
            await call

    asyncio.run(scenario())
    gateway.close()  # runs what is still queued: the reservation, then its release
    with store.connect() as connection:
        statuses = list(connection.scalars(select(GatewayReservation.status)))
        reserved = connection.scalar(
            select(GatewayBudgetCounter.reserved_usd).where(GatewayBudgetCounter.scope == "tenant:acme")
        )
    assert statuses == ["released"]
    assert reserved == 0
