"""The same dbt project on DuckDB and on PostgreSQL gives the same marts from the same events.

One ops store with the fixed event set of test_dbt_marts is loaded into a DuckDB file and into a
PostgreSQL warehouse database (created by `load_raw` itself), both are built with `dbt build` (the
DuckDB build is test_dbt_marts' own, shared for the session: `fixed_events_build`), and
every table in `marts` is compared row by row: ordered, decimals to the cent, timestamps in UTC.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import duckdb
import psycopg
import pytest
from psycopg import sql
from test_dbt_marts import CONTRACT_COLUMNS, Built, failures, run_dbt, vars_arg

from agentprovision.settings import load_settings
from agentprovision.store.db import make_engine
from agentprovision.warehouse import dbt_environment, load_raw

pytestmark = pytest.mark.postgres

# A database of its own, so this test never meets another test's warehouse.
PARITY_DATABASE = "ap_test_warehouse_parity"
# Columns that record when a load or build ran rather than what the data says.
RUN_TIME_COLUMNS = {"loaded_at", "_loaded_at", "dbt_updated_at", "dbt_scd_id"}


def normalise(value: object) -> object:
    if isinstance(value, Decimal):
        return value.quantize(Decimal("0.01"))
    if isinstance(value, float):
        return round(value, 2)
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC) if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.dumps(json.loads(value), sort_keys=True)  # JSON text: same document, any spacing
        except ValueError:
            return value
    return value


def sort_key(row: tuple) -> tuple:
    return tuple((value is None, str(value)) for value in row)


def duckdb_mart(path: Path, mart: str) -> tuple[list[str], list[tuple]]:
    with duckdb.connect(str(path)) as con:
        cursor = con.execute(f"select * from marts.{mart}")
        columns = [d[0] for d in cursor.description]
        return columns, cursor.fetchall()


def postgres_mart(url: str, mart: str) -> tuple[list[str], list[tuple]]:
    with psycopg.connect(url) as con:
        con.execute("set time zone 'UTC'")
        cursor = con.execute(sql.SQL("select * from marts.{}").format(sql.Identifier(mart)))
        columns = [d.name for d in cursor.description]
        return columns, cursor.fetchall()


def comparable(columns: list[str], rows: list[tuple]) -> list[tuple]:
    keep = [i for i, c in enumerate(columns) if c not in RUN_TIME_COLUMNS]
    return sorted((tuple(normalise(row[i]) for i in keep) for row in rows), key=sort_key)


@pytest.fixture(scope="module")
def warehouses(fixed_events_build: Built, tmp_path_factory: pytest.TempPathFactory, postgres_admin_dsn: str):
    # The DuckDB side is test_dbt_marts' build of the same events (one per session); its ops store feeds PostgreSQL.
    assert failures(fixed_events_build.result) == []
    engine = make_engine(f"sqlite:///{fixed_events_build.work / 'ops.db'}")

    url = f"{postgres_admin_dsn.rsplit('/', 1)[0]}/{PARITY_DATABASE}"
    with psycopg.connect(postgres_admin_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(PARITY_DATABASE)))
    reports = {r.table: r.rows for r in load_raw(engine, url)}  # creates the database and its schemas
    assert reports["events"] > 1500
    settings = load_settings({"AGENTPROVISION_WAREHOUSE_TARGET": "postgres", "AGENTPROVISION_WAREHOUSE_URL": url})
    work = tmp_path_factory.mktemp("parity")
    pg = run_dbt(["build", *vars_arg()], work / "postgres", dbt_environment(settings), target="postgres")
    assert failures(pg) == []
    engine.dispose()
    yield fixed_events_build.path, url
    with psycopg.connect(postgres_admin_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(PARITY_DATABASE)))


def test_both_targets_build_the_same_set_of_marts(warehouses: tuple[Path, str]) -> None:
    duckdb_path, url = warehouses
    with duckdb.connect(str(duckdb_path)) as con:
        in_duckdb = {
            r[0]
            for r in con.execute(
                "select table_name from information_schema.tables where table_schema = 'marts'"
            ).fetchall()
        }
    with psycopg.connect(url) as con:
        in_postgres = {
            r[0] for r in con.execute("select table_name from information_schema.tables where table_schema = 'marts'")
        }
    assert in_duckdb == in_postgres
    assert set(CONTRACT_COLUMNS) <= in_duckdb


MARTS = sorted(
    [*CONTRACT_COLUMNS, "dim_tenants", "dim_departments", "dim_users", "dim_agents", "dim_models"]
    + ["fct_audit_events", "fct_config_versions"]
)


@pytest.mark.parametrize("mart", MARTS)
def test_mart_contents_are_identical_on_duckdb_and_postgres(warehouses: tuple[Path, str], mart: str) -> None:
    duckdb_path, url = warehouses
    duck_columns, duck_rows = duckdb_mart(duckdb_path, mart)
    pg_columns, pg_rows = postgres_mart(url, mart)
    assert duck_columns == pg_columns
    duck, pg = comparable(duck_columns, duck_rows), comparable(pg_columns, pg_rows)
    assert len(duck) == len(pg)
    assert duck or mart == "fct_invoice_variance"  # no invoices in the fixed set; every other mart has rows
    mismatched = [(a, b) for a, b in zip(duck, pg, strict=True) if a != b]
    assert mismatched[:3] == []
