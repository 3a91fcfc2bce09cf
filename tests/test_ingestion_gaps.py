"""Exactly-once ingestion when stream seqs commit out of order (PostgreSQL sequences do)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from sqlalchemy import Engine, insert

from agentprovision.events import PlatformEvent
from agentprovision.store.db import make_engine, migrate
from agentprovision.store.models import Event
from agentprovision.warehouse import load_raw
from agentprovision.watermarks import GAP_GRACE, MAX_TRACKED_GAP, advance

T0 = datetime(2026, 11, 24, 4, 0, tzinfo=UTC)


def test_a_seq_skipped_by_the_watermark_stays_wanted_until_it_arrives() -> None:
    first = advance(10, [11, 13, 14], {}, T0)
    assert first.watermark == 14 and first.gaps == {12: T0}
    later = advance(14, [12, 15], first.gaps, T0 + timedelta(seconds=5))
    assert later.watermark == 15 and later.gaps == {} and later.filled == [12]


def test_gaps_that_never_commit_are_given_up_after_the_grace_period() -> None:
    step = advance(14, [], {12: T0}, T0 + GAP_GRACE - timedelta(seconds=1))
    assert step.gaps == {12: T0} and step.watermark == 14
    assert advance(14, [], {12: T0}, T0 + GAP_GRACE).abandoned == [12]


def test_a_huge_jump_is_not_tracked_seq_by_seq() -> None:
    step = advance(0, [MAX_TRACKED_GAP + 5], {}, T0)
    assert step.watermark == MAX_TRACKED_GAP + 5 and step.gaps == {}


def event(seq: int | None = None) -> dict:
    row = PlatformEvent(tenant_id="acme", kind="usage", name="model_call").as_row()
    return row if seq is None else {**row, "seq": seq}


def raw_seqs(path: Path) -> list[int]:
    with duckdb.connect(str(path), read_only=True) as con:
        return [row[0] for row in con.execute("SELECT seq FROM raw.events ORDER BY seq").fetchall()]


def streamed(reports: list) -> dict:
    return {r.table: r for r in reports if r.watermark is not None}


def test_a_row_committed_below_the_watermark_is_loaded_once(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'ops.db'}")
    migrate(engine)
    warehouse = tmp_path / "warehouse.duckdb"
    with engine.begin() as connection:
        connection.execute(insert(Event), [event(1), event(3)])  # 2 is still "in flight"

    first = streamed(load_raw(engine, warehouse))["events"]
    assert (first.rows, first.watermark, first.open_gaps) == (2, 3, 1)

    with engine.begin() as connection:
        connection.execute(insert(Event), [event(2), event(4)])
    second = streamed(load_raw(engine, warehouse))["events"]
    assert (second.rows, second.watermark, second.open_gaps, second.late_rows) == (2, 4, 0, 1)

    again = streamed(load_raw(engine, warehouse))["events"]
    assert again.rows == 0
    assert raw_seqs(warehouse) == [1, 2, 3, 4]


@pytest.mark.postgres
def test_postgres_out_of_order_commit_is_not_skipped(tmp_path: Path, postgres_url: str) -> None:
    engine: Engine = make_engine(postgres_url)
    migrate(engine)
    warehouse = tmp_path / "warehouse.duckdb"
    with engine.connect() as slow:
        # A transaction takes a seq first and commits last, as a slow event writer would.
        slow_tx = slow.begin()
        slow.execute(insert(Event), [event()])
        with engine.begin() as fast:
            fast.execute(insert(Event), [event()])

        first = streamed(load_raw(engine, warehouse))["events"]
        assert (first.rows, first.open_gaps) == (1, 1)
        slow_tx.commit()

    second = streamed(load_raw(engine, warehouse))["events"]
    assert (second.rows, second.late_rows, second.open_gaps) == (1, 1, 0)
    seqs = raw_seqs(warehouse)
    assert len(seqs) == 2 and len(set(seqs)) == 2
    assert streamed(load_raw(engine, warehouse))["events"].rows == 0
    engine.dispose()
