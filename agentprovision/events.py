"""The event model and its batched, append-only writer.

Everything the platform does that finance, operators or auditors may later ask about (a model
call, a tool call, a policy decision, a run finishing, an alert) is one `PlatformEvent`. Events
are buffered and written in batches; a batch that fails to write stays buffered for the next
flush rather than being dropped.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import to_jsonable_python
from sqlalchemy import Engine, bindparam, insert

from agentprovision.store.compiled import CompiledStatement
from agentprovision.store.models import Event

EventKind = Literal["usage", "tool", "policy", "run", "alert", "sync"]


class PlatformEvent(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    tenant_id: str | None
    kind: EventKind
    name: str = Field(min_length=1, max_length=100)
    occurred_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    agent_id: str | None = None
    run_id: str | None = None
    payload: dict[str, Any] = Field(default_factory=dict)

    def as_row(self) -> dict[str, Any]:
        """The `events` row; the payload as JSON-ready values (Decimal and datetime as text)."""
        return {
            "event_id": self.event_id,
            "tenant_id": self.tenant_id,
            "kind": self.kind,
            "name": self.name,
            "occurred_at": self.occurred_at,
            "recorded_at": datetime.now(UTC),
            "agent_id": self.agent_id,
            "run_id": self.run_id,
            "payload": to_jsonable_python(self.payload),
        }


_ROW_COLUMNS = ("event_id", "tenant_id", "kind", "name", "occurred_at", "recorded_at", "agent_id", "run_id", "payload")
# Compiled once and run as one executemany on the driver: SQLAlchemy's per-row parameter handling cost
# more than the insert itself, and the gateway writes five events per model call.
INSERT_EVENT = CompiledStatement(insert(Event).values({name: bindparam(name) for name in _ROW_COLUMNS}))


def write_events(engine: Engine, events: Iterable[PlatformEvent]) -> int:
    """Insert events in one transaction; all or none of them land."""
    rows = [event.as_row() for event in events]
    if rows:
        dialect = engine.dialect
        with engine.begin() as connection:
            connection.exec_driver_sql(
                INSERT_EVENT.compiled_for(dialect).sql, [INSERT_EVENT.arguments(dialect, row) for row in rows]
            )
    return len(rows)


class EventWriter:
    """Buffers events and writes them in batches; thread-safe; flushes whatever is left on close.

    Emitting never waits for a batch being written: the buffer's lock is held only to append or to take
    the buffer, and a second lock lets one batch at a time go to the store, so batches land in order.
    (Holding one lock through the write stalled the gateway's event loop for the length of every write.)
    """

    def __init__(self, engine: Engine, batch_size: int = 200, *, flush_when_full: bool = True):
        """With `flush_when_full=False` the owner flushes (`pending >= batch_size` says when it is due)."""
        self._engine = engine
        self.batch_size = batch_size
        self._flush_when_full = flush_when_full
        self._buffer: list[PlatformEvent] = []
        self._lock = threading.Lock()  # the buffer
        self._write_lock = threading.Lock()  # one batch in flight at a time

    def emit(self, event: PlatformEvent) -> None:
        with self._lock:
            self._buffer.append(event)
            full = len(self._buffer) >= self.batch_size
        if full and self._flush_when_full:
            self.flush()

    def flush(self) -> int:
        with self._write_lock:
            batch = self.take()
            try:
                return write_events(self._engine, batch)
            except Exception:
                self.put_back(batch)  # the caller sees the error
                raise

    def take(self) -> list[PlatformEvent]:
        """Everything buffered, for an owner that writes it in a transaction of its own; see `put_back`."""
        with self._lock:
            batch, self._buffer = self._buffer, []
        return batch

    def put_back(self, batch: list[PlatformEvent]) -> None:
        """A taken batch that did not land: kept, in order, ahead of anything emitted meanwhile."""
        with self._lock:
            self._buffer = batch + self._buffer

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.flush()
