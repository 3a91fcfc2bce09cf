"""Short ops-store transactions for the gateway's budget and rate-limit ledger, run on the driver.

Every model call runs two small transactions (admission before the call, settlement after it) of a
few single-row statements. Through SQLAlchemy's Connection each statement cost some 25-30 µs of
Python, several times what SQLite needs to run it, so the ledger's statements are compiled once per
dialect and run on the DBAPI cursor (agentprovision.store.compiled). Sync callers run their
transactions in their own thread (`ledger_transaction`); async callers hand them to the gateway's
one ledger thread (`LedgerWorker`), which commits the jobs of concurrent calls together.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Generic, TypeVar

from sqlalchemy import Engine
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError

from agentprovision.store.compiled import CompiledStatement

T = TypeVar("T")


class LedgerStatement(CompiledStatement):
    """A fixed ledger statement (see agentprovision.store.compiled)."""


class LedgerTransaction:
    """One open transaction on a DBAPI connection; rows come back as plain tuples."""

    def __init__(self, cursor: Any, dialect: Dialect):
        self._cursor = cursor
        self.dialect = dialect

    def execute(self, statement: LedgerStatement, params: dict[str, Any]) -> int:
        """Run a statement without RETURNING; returns how many rows it changed."""
        self._run(statement, params)
        return int(self._cursor.rowcount)

    def first(self, statement: LedgerStatement, params: dict[str, Any]) -> tuple[Any, ...] | None:
        self._run(statement, params)
        row = self._cursor.fetchone()
        self._drain()
        return row

    def all(self, statement: LedgerStatement, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        self._run(statement, params)
        return list(self._cursor.fetchall())

    def execute_many(self, statement: CompiledStatement, arguments: list[Any]) -> None:
        """One statement for many rows (an executemany), e.g. a batch of events. The arguments are each
        row's `statement.arguments(dialect, row)`, prepared by the caller: off this thread, if it is the
        ledger thread, where Python work competes with the event loop for the GIL."""
        compiled = statement.compiled_for(self.dialect)
        try:
            self._cursor.executemany(compiled.sql, arguments)
        except self.dialect.loaded_dbapi.Error as error:
            raise _wrapped(self.dialect, compiled.sql, error) from error

    def _run(self, statement: LedgerStatement, params: dict[str, Any]) -> None:
        compiled = statement.compiled_for(self.dialect)
        arguments = statement.arguments(self.dialect, params)
        try:
            self._cursor.execute(compiled.sql, arguments)
        except self.dialect.loaded_dbapi.Error as error:
            raise _wrapped(self.dialect, compiled.sql, error) from error

    def savepoint(self) -> None:
        self._plain("SAVEPOINT ledger_job")

    def release_savepoint(self) -> None:
        self._plain("RELEASE SAVEPOINT ledger_job")

    def rollback_to_savepoint(self) -> None:
        self._plain("ROLLBACK TO SAVEPOINT ledger_job")

    def _plain(self, sql: str) -> None:
        try:
            self._cursor.execute(sql)
        except self.dialect.loaded_dbapi.Error as error:
            raise _wrapped(self.dialect, sql, error) from error

    def _drain(self) -> None:
        # SQLite finishes an UPDATE ... RETURNING only once every row was read.
        if self.dialect.name == "sqlite":
            self._cursor.fetchall()


@contextmanager
def ledger_transaction(engine: Engine) -> Iterator[LedgerTransaction]:
    """Committed on success, rolled back on any error. On SQLite the write lock is taken up front
    (BEGIN IMMEDIATE, as agentprovision.store.db does for every writer), so writers queue on the
    busy timeout rather than failing halfway."""
    dialect = engine.dialect
    connection = engine.raw_connection()  # from the engine's pool, configured by its connect hooks
    cursor = connection.cursor()
    try:
        try:
            if dialect.name == "sqlite":
                cursor.execute("BEGIN IMMEDIATE")
            yield LedgerTransaction(cursor, dialect)
            connection.commit()
        except dialect.loaded_dbapi.Error as error:
            raise _wrapped(dialect, "BEGIN/COMMIT", error) from error
    except BaseException:
        connection.rollback()
        raise
    finally:
        cursor.close()
        connection.close()  # back to the pool


@dataclass
class _Job(Generic[T]):
    work: Callable[[LedgerTransaction], T]
    loop: asyncio.AbstractEventLoop | None = None  # None: nobody waits for the outcome
    future: asyncio.Future[T] | None = None
    on_failure: Callable[[BaseException], object] | None = None  # for a job nobody waits for
    result: Any = None
    error: BaseException | None = None


class LedgerWorker:
    """One thread that runs the ledger transactions of async callers, many per commit.

    Handing each transaction to a thread pool cost more CPU than the transaction itself: two hand-offs per
    call, and pool threads running Python alongside the event loop fight over the GIL. Here the event
    loop queues a job and awaits it; the one worker takes every job queued meanwhile and runs them in one
    transaction, each inside a savepoint so a refused job (a budget or rate limit) undoes only its own
    writes, then commits once and wakes each waiting loop once. The loop itself never waits on a lock.
    Jobs run in the order they were queued, so a job queued after another sees its writes.
    """

    def __init__(self, engine: Engine, max_batch: int = 64):
        self._engine = engine
        self._max_batch = max_batch
        self._jobs: queue.SimpleQueue[_Job[Any] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.batches = 0  # transactions run so far, for a look at how well jobs are batched

    async def run(self, work: Callable[[LedgerTransaction], T]) -> T:
        """Run `work(tx)` in a ledger transaction; its result, or its exception, once the batch committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._ensure_started()
        self._jobs.put(_Job(work, loop, future))
        return await future

    def submit(
        self,
        work: Callable[[LedgerTransaction], object],
        on_failure: Callable[[BaseException], object] | None = None,
    ) -> None:
        """Queue `work` without waiting for it, e.g. to undo a job whose caller was cancelled meanwhile.

        `on_failure(error)` runs on the ledger thread if the job's writes did not hold: the job raised, or
        its batch did not commit. It must not raise."""
        self._ensure_started()
        self._jobs.put(_Job(work, on_failure=on_failure))

    def close(self) -> None:
        """Finish the queued jobs and stop the thread (a later `run` starts it again)."""
        with self._start_lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._jobs.put(None)
            thread.join()

    def _ensure_started(self) -> None:
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._serve, name="gateway-ledger", daemon=True)
                    self._thread.start()

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            batch = [job]
            while len(batch) < self._max_batch:
                try:
                    more = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._jobs.put(None)  # stop after this batch
                    break
                batch.append(more)
            self._run_batch(batch)

    def _run_batch(self, batch: list[_Job[Any]]) -> None:
        self.batches += 1
        try:
            with ledger_transaction(self._engine) as tx:
                if len(batch) == 1:
                    batch[0].result = batch[0].work(tx)  # an error rolls back the whole (one-job) transaction
                else:
                    for job in batch:
                        self._run_in_savepoint(tx, job)
        except BaseException as error:
            # A lone job failed (its transaction rolled back), or the batch did not commit: no write of it holds.
            for job in batch:
                job.error = error
        for job in batch:
            if job.error is not None and job.on_failure is not None:
                job.on_failure(job.error)
        by_loop: dict[asyncio.AbstractEventLoop, list[_Job[Any]]] = {}
        for job in batch:
            if job.loop is not None:
                by_loop.setdefault(job.loop, []).append(job)
        for loop, jobs in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody is waiting any more
                loop.call_soon_threadsafe(_deliver, jobs)

    @staticmethod
    def _run_in_savepoint(tx: LedgerTransaction, job: _Job[Any]) -> None:
        tx.savepoint()
        try:
            job.result = job.work(tx)
        except Exception as error:
            tx.rollback_to_savepoint()
            job.error = error
        else:
            tx.release_savepoint()


def _deliver(jobs: list[_Job[Any]]) -> None:
    for job in jobs:
        if job.future is None or job.future.cancelled():
            continue
        if job.error is not None:
            job.future.set_exception(job.error)
        else:
            job.future.set_result(job.result)


def _wrapped(dialect: Dialect, sql: str, error: Exception) -> DBAPIError:
    """The driver's error as SQLAlchemy would raise it (OperationalError, IntegrityError, ...), so callers
    handle ledger failures like every other ops-store failure. Parameters are left out of the message."""
    return DBAPIError.instance(sql, None, error, dialect.loaded_dbapi.Error, hide_parameters=True, dialect=dialect)


def money(value: Any) -> Decimal:
    """A money column as Decimal: SQLite hands back floats, rounded here to the column's 8 places."""
    if value is None:
        return Decimal(0)
    if isinstance(value, Decimal):
        return value
    return Decimal(f"{value:.8f}")
