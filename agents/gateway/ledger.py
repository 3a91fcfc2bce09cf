"""Short ops-store transactions for the gateway's budget and rate-limit ledger, run on the driver.

Every model call runs two small transactions (admission before the call, settlement after it) of a
few single-row statements. Through SQLAlchemy's Connection each statement costs some 25-30 µs of
Python (execution context, event dispatch, result wrapping), several times what SQLite needs to run
it, and per call that added up to a large share of the gateway's overhead. The ledger's statements
are fixed, so each is still written once as a SQLAlchemy Core expression, compiled once per
dialect, and then run on the DBAPI cursor with its parameters converted by SQLAlchemy's own bind
processors (Decimal to float and datetime to text on SQLite; nothing on PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement


@dataclass(frozen=True)
class _Compiled:
    sql: str
    positions: tuple[str, ...] | None  # parameter order for positional paramstyles (SQLite's qmark)
    processors: dict[str, Callable[[Any], Any]]
    constants: dict[str, Any]  # values written into the statement itself, e.g. status="reserved"


class LedgerStatement:
    """A fixed Core statement, compiled on first use per dialect."""

    def __init__(self, statement: ClauseElement):
        self.statement = statement
        self._compiled: dict[str, _Compiled] = {}

    def compiled_for(self, dialect: Dialect) -> _Compiled:
        compiled = self._compiled.get(dialect.name)
        if compiled is None:
            form = self.statement.compile(dialect=dialect)
            processors, constants = {}, {}
            for name, bind in form.binds.items():
                processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
                if processor is not None:
                    processors[name] = processor
                if bind.value is not None:
                    constants[name] = bind.value
            positions = tuple(form.positiontup) if form.positional and form.positiontup else None
            compiled = _Compiled(form.string, positions, processors, constants)
            self._compiled[dialect.name] = compiled  # a benign race: two threads compile the same thing
        return compiled


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

    def _run(self, statement: LedgerStatement, params: dict[str, Any]) -> None:
        compiled = statement.compiled_for(self.dialect)
        values = {**compiled.constants, **params}
        for name, processor in compiled.processors.items():
            if name in values:
                values[name] = processor(values[name])
        arguments: Any = values if compiled.positions is None else tuple(values[n] for n in compiled.positions)
        try:
            self._cursor.execute(compiled.sql, arguments)
        except self.dialect.loaded_dbapi.Error as error:
            raise _wrapped(self.dialect, compiled.sql, error) from error

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
