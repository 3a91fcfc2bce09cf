"""Raw loads from the ops store into DuckDB: exactly once past the watermark, all or nothing."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from sqlalchemy import Engine

from agentprovision import warehouse
from agentprovision.apply import apply_config
from agentprovision.config import load_config_dir
from agentprovision.events import PlatformEvent, write_events
from agentprovision.store.db import session_factory, transaction
from agentprovision.warehouse import load_raw, publish


def seeded(store: Engine) -> Engine:
    with transaction(session_factory(store)) as session:
        apply_config(session, load_config_dir("config").config, actor="t@example.com", source="config")
    return store


def count(path: Path, table: str) -> int:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(f"SELECT count(*) FROM raw.{table}").fetchone()[0]


def test_streams_load_exactly_once(store: Engine, tmp_path: Path) -> None:
    warehouse = tmp_path / "wh.duckdb"
    seeded(store)
    write_events(store, [PlatformEvent(tenant_id="acme", kind="run", name="run.finished") for _ in range(3)])
    first = {r.table: r for r in load_raw(store, warehouse)}
    assert first["events"].rows == 3 and first["tenants"].rows == 3

    again = {r.table: r for r in load_raw(store, warehouse)}
    assert again["events"].rows == 0 and again["audit_records"].rows == 0
    assert count(warehouse, "events") == 3 and count(warehouse, "tenants") == 3

    write_events(store, [PlatformEvent(tenant_id="globex", kind="usage", name="llm.call", payload={"tokens": 7})])
    third = {r.table: r for r in load_raw(store, warehouse)}
    assert third["events"].rows == 1 and third["events"].watermark == first["events"].watermark + 1
    with duckdb.connect(str(warehouse), read_only=True) as con:
        tenants = con.execute("SELECT tenant_id, count(*) FROM raw.events GROUP BY 1 ORDER BY 1").fetchall()
        payload = con.execute("SELECT payload FROM raw.events WHERE tenant_id = 'globex'").fetchone()[0]
    assert tenants == [("acme", 3), ("globex", 1)]
    assert payload == '{"tokens": 7}'


def test_a_failed_load_changes_nothing(store: Engine, tmp_path: Path) -> None:
    warehouse = tmp_path / "wh.duckdb"
    seeded(store)
    load_raw(store, warehouse)
    write_events(store, [PlatformEvent(tenant_id="acme", kind="run", name="run.finished")])
    with duckdb.connect(str(warehouse)) as con:
        # Sabotage the last table of the load so it fails after the earlier tables were replaced.
        con.execute("ALTER TABLE raw.events ADD COLUMN sabotage INTEGER NOT NULL DEFAULT 0")
        con.execute("DELETE FROM raw.tenants WHERE tenant_id = 'acme'")
    with pytest.raises(duckdb.Error):
        load_raw(store, warehouse)
    assert count(warehouse, "tenants") == 2  # the earlier replace was rolled back with the failure
    with duckdb.connect(str(warehouse), read_only=True) as con:
        watermark = con.execute("SELECT last_seq FROM raw._watermarks WHERE stream = 'events'").fetchone()[0]
    assert watermark == 0 and count(warehouse, "events") == 0


def test_publish_gives_readers_a_complete_copy(store: Engine, tmp_path: Path) -> None:
    warehouse = tmp_path / "wh.duckdb"
    seeded(store)
    load_raw(store, warehouse)
    published = publish(warehouse, tmp_path / "wh_published.duckdb")
    with duckdb.connect(str(warehouse)):  # the writer holding the file does not block the copy's readers
        assert count(published, "agents") == 8


@pytest.mark.postgres
def test_postgres_target_creates_the_database_and_loads_exactly_once(
    store: Engine, postgres_admin_dsn: str, tmp_path: Path
) -> None:
    import psycopg

    from agentprovision.settings import load_settings
    from agentprovision.warehouse import dbt_environment, warehouse_destination

    name = f"ap_test_wh_load_{uuid.uuid4().hex[:10]}"
    url = f"{postgres_admin_dsn.rsplit('/', 1)[0]}/{name}"
    seeded(store)
    write_events(store, [PlatformEvent(tenant_id="acme", kind="usage", name="model_call", payload={"cost_usd": "1.5"})])
    try:
        first = {r.table: r for r in load_raw(store, url)}  # the database does not exist yet
        assert first["events"].rows == 1 and first["tenants"].rows == 3
        again = {r.table: r for r in load_raw(store, url)}
        assert again["events"].rows == 0 and again["events"].watermark == first["events"].watermark
        with psycopg.connect(url) as con:
            schemas = {r[0] for r in con.execute("select schema_name from information_schema.schemata")}
            assert {"raw", "staging", "intermediate", "marts", "snapshots"} <= schemas
            assert con.execute("select count(*) from raw.tenants").fetchone() == (3,)
            assert con.execute("select count(*) from raw.events").fetchone() == (1,)
            assert con.execute("select count(*) from raw.provider_invoice_lines").fetchone() == (0,)
            payload = con.execute("select payload from raw.events").fetchone()[0]
            assert payload == '{"cost_usd": "1.5"}'
    finally:
        with psycopg.connect(postgres_admin_dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    settings = load_settings({"AGENTPROVISION_WAREHOUSE_TARGET": "postgres", "AGENTPROVISION_WAREHOUSE_URL": url})
    assert warehouse_destination(settings) == url
    env = dbt_environment(settings)
    assert env["AGENTPROVISION_WAREHOUSE_PG_DBNAME"] == name and env["AGENTPROVISION_WAREHOUSE_TARGET"] == "postgres"


def test_settings_know_both_warehouse_targets(tmp_path: Path) -> None:
    from agentprovision.settings import load_settings
    from agentprovision.warehouse import warehouse_destination

    duck = load_settings({"AGENTPROVISION_STATE_DIR": str(tmp_path)})
    assert duck.warehouse_target == "duckdb" and warehouse_destination(duck) == tmp_path.resolve() / "warehouse.duckdb"
    with pytest.raises(ValueError, match="not a known warehouse target"):
        load_settings({"AGENTPROVISION_WAREHOUSE_TARGET": "snowflake"})
    with pytest.raises(ValueError, match="postgresql://"):
        load_settings({"AGENTPROVISION_WAREHOUSE_TARGET": "postgres", "AGENTPROVISION_WAREHOUSE_URL": "mysql://x/y"})


def test_a_snapshot_table_with_an_old_layout_is_rebuilt(store: Engine, tmp_path: Path) -> None:
    warehouse = tmp_path / "wh.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        # A warehouse from before config_versions carried the applied config's content.
        con.execute("CREATE SCHEMA raw")
        con.execute("CREATE TABLE raw.config_versions (version INTEGER, _loaded_at TIMESTAMPTZ)")
    seeded(store)
    load_raw(store, warehouse)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        budget = con.execute(
            "SELECT json_extract_string(content, '$.platform.platform.budget.monthly_hard_usd')"
            " FROM raw.config_versions"
        ).fetchall()
    assert budget == [("5000",)]


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def destination(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path | str]:
    """A warehouse of either target: a DuckDB file, or a PostgreSQL database that load_raw creates."""
    if request.param == "duckdb":
        yield tmp_path / "wh.duckdb"
        return
    import psycopg

    admin = request.getfixturevalue("postgres_admin_dsn")
    name = f"ap_test_wh_batches_{uuid.uuid4().hex[:10]}"
    yield f"{admin.rsplit('/', 1)[0]}/{name}"
    with psycopg.connect(admin, autocommit=True) as con:
        con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def raw_events(destination: Path | str) -> list[tuple]:
    query = "SELECT seq, event_id, tenant_id, agent_id, occurred_at, payload FROM raw.events ORDER BY seq"
    if isinstance(destination, Path):
        with duckdb.connect(str(destination), read_only=True) as con:
            return con.execute(query).fetchall()
    import psycopg

    with psycopg.connect(destination) as con:
        return con.execute(query).fetchall()


def test_a_load_in_many_batches_lands_every_event_once_and_intact(
    store: Engine, destination: Path | str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(warehouse, "LOAD_BATCH_ROWS", 700)  # 2,000 events: three batches, the last one partial
    start = datetime(2026, 10, 1, 8, 30, tzinfo=UTC)
    # Text a CSV or JSON round trip could mangle: quotes, commas, newlines, non-ASCII, '' against NULL.
    awkward = {"text": 'say "hi", then\nleave \t é 🚀', "empty": "", "missing": None, "cost_usd": "0.00012345"}
    events = [
        PlatformEvent(
            tenant_id=None if i % 7 == 0 else "acme",
            kind="usage",
            name="model_call",
            agent_id="" if i % 5 == 0 else f"agent-{i % 3}",
            occurred_at=start + timedelta(seconds=i, microseconds=i),
            payload={"i": i, **awkward},
        )
        for i in range(3_000)
    ]
    write_events(store, events[:2_000])
    first = {r.table: r for r in load_raw(store, destination)}["events"]
    write_events(store, events[2_000:])
    second = {r.table: r for r in load_raw(store, destination)}["events"]
    again = {r.table: r for r in load_raw(store, destination)}["events"]

    assert (first.rows, second.rows, again.rows) == (2_000, 1_000, 0)
    assert (second.watermark, second.open_gaps) == (3_000, 0) and again.watermark == 3_000
    rows = raw_events(destination)
    assert [row[0] for row in rows] == list(range(1, 3_001))  # every seq once, none skipped
    by_id = {row[1]: row for row in rows}
    assert [by_id[event.event_id][0] for event in events] == list(range(1, 3_001))  # each row keeps its own seq
    for event in events:
        _, _, tenant_id, agent_id, occurred_at, payload = by_id[event.event_id]
        assert (tenant_id, agent_id, occurred_at) == (event.tenant_id, event.agent_id, event.occurred_at)
        assert json.loads(payload) == event.payload  # the store's JSON text, not re-serialised


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)  # PostgreSQL would refuse the bad bytes on write
def test_a_load_that_fails_in_a_later_batch_changes_nothing(
    store: Engine, destination: Path | str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(warehouse, "LOAD_BATCH_ROWS", 700)
    seeded(store)
    write_events(store, [PlatformEvent(tenant_id="acme", kind="run", name="run.finished") for _ in range(4_000)])
    with store.begin() as con:
        con.exec_driver_sql("DELETE FROM events WHERE seq > 2000")  # kept back for the second load
    load_raw(store, destination)
    write_events(store, [PlatformEvent(tenant_id="acme", kind="run", name="run.finished") for _ in range(2_000)])
    with store.begin() as con:
        # Bytes that are not UTF-8 in the new events' third batch: two batches are appended before it fails.
        bad_seq = con.exec_driver_sql("SELECT max(seq) - 100 FROM events").scalar_one()
        con.exec_driver_sql(f"UPDATE events SET name = CAST(X'FF' AS TEXT) WHERE seq = {bad_seq}")

    with pytest.raises(pa.ArrowInvalid, match="(?i)utf-?8"):  # the reading error itself, not a wrapper around it
        load_raw(store, destination)
    rows = raw_events(destination)
    assert [row[0] for row in rows] == list(range(1, 2_001))  # nothing of the failed load remains
    watermark = "SELECT last_seq FROM raw._watermarks WHERE stream = 'events'"
    if isinstance(destination, Path):
        with duckdb.connect(str(destination), read_only=True) as con:
            assert con.execute(watermark).fetchall() == [(2_000,)]
    else:
        import psycopg

        with psycopg.connect(destination) as con:
            assert con.execute(watermark).fetchall() == [(2_000,)]
