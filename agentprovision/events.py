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
from sqlalchemy import Engine, insert

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
        row = self.model_dump(mode="python")
        row["payload"] = self.model_dump(mode="json")["payload"]
        row["recorded_at"] = datetime.now(UTC)
        return row


def write_events(engine: Engine, events: Iterable[PlatformEvent]) -> int:
    """Insert events in one transaction; all or none of them land."""
    rows = [event.as_row() for event in events]
    if rows:
        with engine.begin() as connection:
            connection.execute(insert(Event), rows)
    return len(rows)


class EventWriter:
    """Buffers events and writes them in batches; thread-safe; flushes whatever is left on close."""

    def __init__(self, engine: Engine, batch_size: int = 200, *, flush_when_full: bool = True):
        """With `flush_when_full=False` the owner flushes (`pending >= batch_size` says when it is due)."""
        self._engine = engine
        self.batch_size = batch_size
        self._flush_when_full = flush_when_full
        self._buffer: list[PlatformEvent] = []
        self._lock = threading.Lock()

    def emit(self, event: PlatformEvent) -> None:
        with self._lock:
            self._buffer.append(event)
            full = len(self._buffer) >= self.batch_size
        if full and self._flush_when_full:
            self.flush()

    def flush(self) -> int:
        with self._lock:
            batch, self._buffer = self._buffer, []
            try:
                return write_events(self._engine, batch)
            except Exception:
                # Keep the batch, in order, ahead of anything emitted meanwhile; the caller sees the error.
                self._buffer = batch + self._buffer
                raise

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.flush()
