"""Fixed statements compiled once per dialect and run on the DBAPI cursor.

For short, hot statements (the gateway's ledger, event inserts) SQLAlchemy's per-execution machinery
(execution context, event dispatch, per-row parameter processing, result wrapping) cost several times
what the database needs to run them. A statement here is still written as a SQLAlchemy Core expression,
compiled once per dialect; its parameters go through SQLAlchemy's own bind processors (Decimal to
float and datetime to text on SQLite, JSON serialisation), so the values stored are exactly the ones
SQLAlchemy would have stored.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement


@dataclass(frozen=True)
class _Compiled:
    sql: str
    processors: dict[str, Callable[[Any], Any]]
    constants: dict[str, Any]  # values written into the statement itself, e.g. status="reserved"
    # The values of a parameter dict in statement order, for positional paramstyles (SQLite's qmark).
    in_order: Callable[[dict[str, Any]], tuple[Any, ...]] | None


class CompiledStatement:
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
            in_order = None
            if positions:
                pick = operator.itemgetter(*positions)
                in_order = (lambda values: (pick(values),)) if len(positions) == 1 else pick
            compiled = _Compiled(form.string, processors, constants, in_order)
            self._compiled[dialect.name] = compiled  # a benign race: two threads compile the same thing
        return compiled

    def arguments(self, dialect: Dialect, params: dict[str, Any]) -> Any:
        """The DBAPI parameters for one execution: processed, in the dialect's paramstyle."""
        compiled = self.compiled_for(dialect)
        values = {**compiled.constants, **params}
        for name, processor in compiled.processors.items():
            if name in values:
                values[name] = processor(values[name])
        return values if compiled.in_order is None else compiled.in_order(values)
