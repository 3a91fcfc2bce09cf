"""Short ops-store transactions for the gateway's budget and rate-limit ledger, run on the driver.

Every model call runs two small transactions (admission before the call, settlement after it) of a
few single-row statements. Through SQLAlchemy's Connection each statement cost some 25-30 µs of
Python, several times what SQLite needs to run it, so the ledger's statements are compiled once per
dialect and run on the DBAPI cursor (agentprovision.store.compiled). Sync callers run their
transactions in their own thread (`ledger_transaction`); async callers queue them with the gateway's
`LedgerWorker`, which commits the jobs of concurrent calls together.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
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


class StoreBusy(Exception):
    """Another writer holds SQLite's write lock: the batch waits for it on the ledger thread instead."""


@contextmanager
def transaction_without_waiting(engine: Engine) -> Iterator[LedgerTransaction]:
    """A SQLite ledger transaction that takes the write lock only if it is free at once (StoreBusy if not).

    Once BEGIN IMMEDIATE holds the lock, nothing else in a WAL-mode transaction waits for another
    connection, so a batch run this way never blocks its thread on a lock."""
    dialect = engine.dialect
    connection = engine.raw_connection()
    cursor = connection.cursor()
    cursor.execute("PRAGMA busy_timeout")
    (waiting_ms,) = cursor.fetchone()
    cursor.execute("PRAGMA busy_timeout=0")
    try:
        try:
            cursor.execute("BEGIN IMMEDIATE")
        except dialect.loaded_dbapi.OperationalError as error:
            if getattr(error, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY:
                raise StoreBusy from error
            raise _wrapped(dialect, "BEGIN IMMEDIATE", error) from error
        try:
            yield LedgerTransaction(cursor, dialect)
            connection.commit()
        except dialect.loaded_dbapi.Error as error:
            connection.rollback()
            raise _wrapped(dialect, "COMMIT", error) from error
        except BaseException:
            connection.rollback()
            raise
    finally:
        try:
            cursor.execute(f"PRAGMA busy_timeout={int(waiting_ms)}")
        except Exception:
            connection.invalidate()  # never back to the pool as a connection that gives up on a lock at once
        cursor.close()
        connection.close()


@dataclass
class _Job(Generic[T]):
    work: Callable[[LedgerTransaction], T]
    loop: asyncio.AbstractEventLoop | None = None  # None: nobody waits for the outcome
    future: asyncio.Future[T] | None = None
    on_failure: Callable[[BaseException], object] | None = None  # for a job nobody waits for
    result: Any = None
    error: BaseException | None = None


class LedgerWorker:
    """Runs the ledger transactions of async callers, many per commit, without the event loop waiting on a lock.

    The loop queues a job and awaits it. Every job queued meanwhile runs in one transaction, each inside a
    savepoint so a refused job (a budget or rate limit) undoes only its own writes; the batch commits once
    and each waiting loop is woken once. Jobs run in the order they were queued, so a job queued after
    another sees its writes.

    Where a batch runs: on PostgreSQL, on the worker's one thread (a statement is a round trip to the
    server). On SQLite, first on the event loop itself, right after the jobs were queued, if the write lock
    is free at once; a batch that finds it taken goes to the thread, which waits for it, and so do the jobs
    queued while the thread has work, to keep their order. Run on the thread, the same SQLite batch cost
    about twice the CPU: its Python competed with the loop for the GIL and took it back after every
    statement (docs/benchmarks.md). A thread pool per transaction, before that, cost more still.
    """

    def __init__(self, engine: Engine, max_batch: int = 64, *, on_loop: bool | None = None):
        self._engine = engine
        self._max_batch = max_batch
        self._on_loop = engine.dialect.name == "sqlite" if on_loop is None else on_loop
        self._jobs: queue.SimpleQueue[_Job[Any] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._loop_jobs: dict[asyncio.AbstractEventLoop, list[_Job[Any]]] = {}  # queued to run on their loop
        self._on_thread = 0  # jobs handed to the thread and not finished yet
        self._count_lock = threading.Lock()
        self.batches = 0  # transactions run so far, for a look at how well jobs are batched

    async def run(self, work: Callable[[LedgerTransaction], T]) -> T:
        """Run `work(tx)` in a ledger transaction; its result, or its exception, once the batch committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue(_Job(work, loop, future))
        return await future

    def submit(
        self,
        work: Callable[[LedgerTransaction], object],
        on_failure: Callable[[BaseException], object] | None = None,
    ) -> None:
        """Queue `work` without waiting for it, e.g. to undo a job whose caller was cancelled meanwhile.

        `on_failure(error)` runs where the batch ran (the event loop or the ledger thread) if the job's
        writes did not hold: the job raised, or its batch did not commit. It must not raise."""
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        self._queue(_Job(work, loop=None, on_failure=on_failure), loop)

    def close(self) -> None:
        """Finish the queued jobs and stop the thread (a later `run` starts it again)."""
        # Jobs whose loop stopped before it ran them still run, on the thread.
        leftovers = [job for jobs in list(self._loop_jobs.values()) for job in jobs]
        self._loop_jobs.clear()
        if leftovers:
            self._to_thread(leftovers)
        with self._start_lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._jobs.put(None)
            thread.join()

    def _queue(self, job: _Job[Any], loop: asyncio.AbstractEventLoop | None = None) -> None:
        loop = loop or job.loop
        pending = self._loop_jobs.get(loop) if loop is not None else None
        if pending is not None:
            pending.append(job)  # behind this loop's queued jobs, whatever the thread is doing
        elif self._on_loop and loop is not None and self._on_thread == 0:
            self._loop_jobs[loop] = [job]
            loop.call_soon(self._run_on_loop, loop)
        else:
            self._to_thread([job])

    def _to_thread(self, jobs: list[_Job[Any]]) -> None:
        with self._count_lock:
            self._on_thread += len(jobs)
        self._ensure_started()
        for job in jobs:
            self._jobs.put(job)

    def _run_on_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        batch = self._loop_jobs.pop(loop, [])
        if not batch:
            return
        interrupted: BaseException | None = None
        try:
            with transaction_without_waiting(self._engine) as tx:
                self._run_jobs(tx, batch)
        except StoreBusy:
            self._to_thread(batch)  # nothing of it ran
            return
        except BaseException as error:
            for job in batch:
                job.error = error
            if not isinstance(error, Exception):
                interrupted = error  # KeyboardInterrupt, SystemExit: the loop must still stop
        self.batches += 1
        self._finish(batch, loop)
        if interrupted is not None:
            raise interrupted

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
        """On the thread."""
        self.batches += 1
        try:
            with ledger_transaction(self._engine) as tx:
                self._run_jobs(tx, batch)
        except BaseException as error:
            for job in batch:
                job.error = error
        with self._count_lock:
            self._on_thread -= len(batch)
        self._finish(batch, None)

    def _run_jobs(self, tx: LedgerTransaction, batch: list[_Job[Any]]) -> None:
        """An error that leaves here means the transaction rolled back: no write of the batch holds."""
        if len(batch) == 1:
            batch[0].result = batch[0].work(tx)  # an error rolls back the whole (one-job) transaction
        else:
            for job in batch:
                self._run_in_savepoint(tx, job)

    @staticmethod
    def _finish(batch: list[_Job[Any]], running: asyncio.AbstractEventLoop | None) -> None:
        """Report failures of unwaited jobs, then wake each waiting loop once (at once if it is `running`)."""
        for job in batch:
            if job.error is not None and job.on_failure is not None:
                job.on_failure(job.error)
        by_loop: dict[asyncio.AbstractEventLoop, list[_Job[Any]]] = {}
        for job in batch:
            if job.loop is not None:
                by_loop.setdefault(job.loop, []).append(job)
        for loop, jobs in by_loop.items():
            if loop is running:
                _deliver(jobs)
                continue
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
