"""The gateway's ledger thread: async callers' transactions batched into one commit, each job on its own."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gateway_support import deployment, request, tenant, write_config
from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, bindparam, func, select
from sqlalchemy.exc import IntegrityError

from agentprovision.events import PlatformEvent
from agentprovision.store.db import make_engine
from agentprovision.store.gateway_models import GatewayBudgetCounter, GatewayReservation
from agentprovision.store.models import Event
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
    worker = LedgerWorker(store, on_loop=False)  # the blocker holds the thread

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
    gateway._ledger = LedgerWorker(store, on_loop=False)  # so the blocker can hold the one thread

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


def test_a_job_nobody_waits_for_reports_a_failure_and_only_a_failure(store: Engine) -> None:
    NOTES.create(store)
    worker = LedgerWorker(store, on_loop=False)  # the blocker holds the thread
    failures: list[BaseException] = []

    def failing(tx: LedgerTransaction) -> None:
        tx.execute(INSERT_NOTE, {"note": "lost"})
        raise Refused("no")

    def fine(tx: LedgerTransaction) -> None:
        tx.execute(INSERT_NOTE, {"note": "kept"})

    async def scenario() -> None:
        started, release = threading.Event(), threading.Event()
        first = asyncio.ensure_future(worker.run(blocker(started, release)))
        await asyncio.to_thread(started.wait, 10)
        worker.submit(failing, on_failure=failures.append)
        worker.submit(fine, on_failure=failures.append)
        await asyncio.sleep(0.05)  # both are queued behind the blocker: one batch
        release.set()
        await first

    asyncio.run(scenario())
    worker.submit(failing, on_failure=failures.append)  # and alone, in a transaction of its own
    worker.close()
    assert [type(error) for error in failures] == [Refused, Refused]
    with store.connect() as connection:
        assert list(connection.scalars(select(NOTES.c.note))) == ["kept"]


def wait_for(condition, what: str, timeout: float = 10) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_async_calls_write_their_events_with_the_ledger_and_keep_a_batch_that_failed(
    store: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = write_config(tmp_path / "c", [deployment("sandbox-basic", tier="basic")], [tenant("acme", hard=10)])
    gateway = Gateway(config, store)
    gateway.events.batch_size = 10

    async def calls(count: int) -> None:
        for _ in range(count):
            await gateway.acomplete(request("acme", max_tokens=20))

    def stored() -> list[str]:
        with store.connect() as connection:
            return list(connection.scalars(select(Event.event_id).order_by(Event.seq)))

    asyncio.run(calls(3))  # five events a call: the first ten are due after the second call
    wait_for(lambda: len(stored()) == 10, "the first batch")  # written without any flush
    assert gateway.events.pending == 5

    # An event whose id is already stored makes the next batch fail as a whole (a unique key).
    gateway.events.emit(PlatformEvent(event_id=stored()[0], tenant_id="acme", kind="run", name="duplicate"))
    with caplog.at_level(logging.WARNING, logger="agents.gateway.gateway"):
        asyncio.run(calls(1))
        wait_for(lambda: "11 gateway events kept for the next flush" in caplog.text, "the failed batch")
    assert len(stored()) == 10
    assert gateway.events.pending == 11  # kept, in order: nothing lost
    with pytest.raises(IntegrityError):
        gateway.close()  # the final flush meets the same duplicate and says so


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'ops.db'}")
    NOTES.create(engine)
    yield engine
    engine.dispose()


def noting(text: str, threads: list[int]):  # type: ignore[no-untyped-def]
    def work(tx: LedgerTransaction) -> str:
        threads.append(threading.get_ident())
        tx.execute(INSERT_NOTE, {"note": text})
        return text

    return work


def test_on_sqlite_a_batch_runs_on_the_event_loop_when_the_write_lock_is_free(sqlite_store: Engine) -> None:
    worker = LedgerWorker(sqlite_store)
    threads: list[int] = []

    async def scenario() -> list[str]:
        return await asyncio.gather(*(worker.run(noting(text, threads)) for text in ("a", "b", "c")))

    assert asyncio.run(scenario()) == ["a", "b", "c"]
    worker.close()
    assert set(threads) == {threading.get_ident()}  # asyncio.run's loop runs in this thread
    assert worker.batches == 1


def test_on_sqlite_a_batch_that_finds_the_lock_taken_waits_on_the_thread_and_the_loop_goes_on(
    sqlite_store: Engine,
) -> None:
    worker = LedgerWorker(sqlite_store)
    threads: list[int] = []
    holder = sqlite_store.raw_connection()  # another writer, e.g. a second gateway process
    holder.cursor().execute("BEGIN IMMEDIATE")

    async def scenario() -> tuple[list[str], int, str]:
        ticks = 0

        async def heartbeat() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        beating = asyncio.ensure_future(heartbeat())
        first = asyncio.ensure_future(worker.run(noting("first", threads)))
        await asyncio.sleep(0.05)  # the first batch found the lock taken and waits on the thread
        second = asyncio.ensure_future(worker.run(noting("second", threads)))  # queued behind it, in order
        await asyncio.sleep(0.2)
        ticks_while_locked = ticks
        holder.commit()
        done = await asyncio.gather(first, second)
        after = await worker.run(noting("after", threads))  # the thread is idle again: back on the loop
        beating.cancel()
        return done, ticks_while_locked, after

    done, ticks_while_locked, after = asyncio.run(scenario())
    worker.close()
    holder.close()
    assert done == ["first", "second"] and after == "after"
    assert ticks_while_locked >= 10  # the loop never waited on the lock
    loop_thread = threading.get_ident()
    assert threads[0] != loop_thread and threads[1] != loop_thread and threads[2] == loop_thread
    with sqlite_store.connect() as connection:
        assert list(connection.scalars(select(NOTES.c.note).order_by(NOTES.c.id))) == ["first", "second", "after"]


def test_on_sqlite_an_interrupt_inside_a_batch_on_the_loop_still_stops_it(sqlite_store: Engine) -> None:
    worker = LedgerWorker(sqlite_store)

    def interrupted(tx: LedgerTransaction) -> None:
        tx.execute(INSERT_NOTE, {"note": "lost"})
        raise KeyboardInterrupt

    async def scenario() -> None:
        worker.submit(interrupted)  # nobody awaits it: only the batch itself can stop the loop
        await asyncio.sleep(1)

    with pytest.raises(KeyboardInterrupt):
        asyncio.run(scenario())
    worker.close()
    with sqlite_store.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(NOTES)) == 0
