"""agentprovision.marts: scoped reads of the published warehouse, on DuckDB and PostgreSQL.

The warehouse here is a small hand-made one (a `marts` schema with three tables), published with
the same `agentprovision.warehouse.publish` the pipeline uses; the dbt-built marts are tested in
the dbt tests. What matters here is the reader: scoping, refusals, errors, and readers that keep
working while another process rebuilds and republishes the file.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from decimal import Decimal
from pathlib import Path

import duckdb
import psycopg
import pytest

from agentprovision.marts import (
    MartQueryError,
    MartQueryTimeout,
    MartReader,
    Scope,
    SqlSyntaxError,
    UnsafeQuery,
    WarehouseUnavailable,
)
from agentprovision.settings import load_settings
from agentprovision.warehouse import publish, published_versions

REPO_ROOT = Path(__file__).resolve().parent.parent

MARTS_DDL = """
CREATE SCHEMA IF NOT EXISTS marts;
CREATE TABLE marts.fct_llm_calls (
    call_id VARCHAR, tenant_id VARCHAR, call_date DATE, model_name VARCHAR,
    prompt_tokens BIGINT, cost_usd DECIMAL(18, 8));
CREATE TABLE marts.dim_tenants (tenant_id VARCHAR, display_name VARCHAR);
CREATE TABLE marts.fct_config_versions (config_version INTEGER, applied_by VARCHAR);
INSERT INTO marts.fct_llm_calls VALUES
    ('c1', 'acme', DATE '2026-10-01', 'gpt-small', 100, 0.50),
    ('c2', 'acme', DATE '2026-10-02', 'gpt-large', 200, 1.25),
    ('c3', 'globex', DATE '2026-10-01', 'gpt-small', 300, 7.00),
    ('c4', 'initech', DATE '2026-10-03', 'gpt-large', 400, 9.00);
INSERT INTO marts.dim_tenants VALUES ('acme', 'Acme'), ('globex', 'Globex'), ('initech', 'Initech');
INSERT INTO marts.fct_config_versions VALUES (1, 'admin');
"""


def build(path: Path, ddl: str = MARTS_DDL) -> None:
    with duckdb.connect(str(path)) as con:
        con.execute(ddl)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "AGENTPROVISION_STATE_DIR": str(tmp_path / "state"),
        "AGENTPROVISION_DUCKDB_PATH": str(tmp_path / "warehouse.duckdb"),
    }


@pytest.fixture
def reader(env: dict[str, str]) -> MartReader:
    settings = load_settings(env)
    build(settings.duckdb_path)
    publish(settings.duckdb_path, settings.published_duckdb_path)
    return MartReader(settings)


def test_no_published_warehouse_says_what_to_run(env: dict[str, str]) -> None:
    reader = MartReader(load_settings(env))
    assert not reader.available() and reader.published_at is None
    with pytest.raises(WarehouseUnavailable, match="agentprovision demo --once"):
        reader.read("fct_llm_calls", Scope.platform())


def test_a_warehouse_without_marts_is_unavailable(env: dict[str, str]) -> None:
    settings = load_settings(env)
    build(settings.duckdb_path, "CREATE SCHEMA raw; CREATE TABLE raw.events (x INTEGER)")
    publish(settings.duckdb_path, settings.published_duckdb_path)
    with pytest.raises(WarehouseUnavailable, match="no marts yet"):
        MartReader(settings).select("SELECT 1", Scope.platform())


def test_read_is_scoped_to_the_tenant(reader: MartReader) -> None:
    assert reader.available() and reader.published_at is not None
    acme = reader.read("fct_llm_calls", Scope.tenant("acme"), order_by=["call_id"])
    assert acme["call_id"].to_list() == ["c1", "c2"]
    everyone = reader.read("fct_llm_calls", Scope.platform())
    assert set(everyone["tenant_id"]) == {"acme", "globex", "initech"}
    assert reader.read("fct_llm_calls", Scope.tenant("nobody")).height == 0


def test_read_columns_filters_order_and_limit(reader: MartReader) -> None:
    frame = reader.read(
        "fct_llm_calls",
        Scope.platform(),
        columns=["call_id", "cost_usd"],
        where={"model_name": ["gpt-small", "gpt-large"], "call_date": "2026-10-01"},
        order_by=["cost_usd desc"],
        limit=1,
    )
    assert frame.columns == ["call_id", "cost_usd"]
    assert frame.rows() == [("c3", Decimal("7.00000000"))]  # decimals stay decimals
    # a tenant filter in `where` cannot widen the scope
    assert reader.read("fct_llm_calls", Scope.tenant("acme"), where={"tenant_id": "globex"}).height == 0
    assert reader.read("fct_llm_calls", Scope.platform(), where={"model_name": []}).height == 0


def test_read_rejects_unknown_marts_and_columns(reader: MartReader) -> None:
    with pytest.raises(WarehouseUnavailable, match="fct_nothing"):
        reader.read("fct_nothing", Scope.platform())
    with pytest.raises(MartQueryError, match="no column 'secret'"):
        reader.read("fct_llm_calls", Scope.platform(), columns=["secret"])
    with pytest.raises(MartQueryError, match="no column"):
        reader.read("fct_llm_calls", Scope.platform(), where={"1=1 OR tenant_id": "x"})
    with pytest.raises(MartQueryError):
        reader.read("fct_llm_calls", Scope.platform(), order_by=["cost_usd; DROP TABLE x"])


def test_select_scopes_every_mart_reference(reader: MartReader) -> None:
    acme = Scope.tenant("acme")
    total = reader.select("SELECT sum(cost_usd) AS total FROM fct_llm_calls", acme)
    assert total["total"][0] == Decimal("1.75")
    joined = reader.select(
        "SELECT t.display_name, count(*) AS calls FROM marts.fct_llm_calls c "
        "JOIN dim_tenants t ON true GROUP BY 1 ORDER BY 1",
        acme,
    )
    assert joined.rows() == [("Acme", 2)]  # the cross join cannot reach other tenants' rows either
    union = reader.select(
        "WITH everyone AS (SELECT tenant_id FROM fct_llm_calls) "
        "SELECT DISTINCT tenant_id FROM everyone UNION SELECT tenant_id FROM dim_tenants",
        acme,
    )
    assert union["tenant_id"].to_list() == ["acme"]
    sub = reader.select("SELECT (SELECT max(cost_usd) FROM fct_llm_calls) AS top", acme)
    assert sub["top"][0] == Decimal("1.25")


def test_select_limit_returns_at_most_that_many_rows_in_order(reader: MartReader) -> None:
    acme = Scope.tenant("acme")
    top = reader.select("SELECT call_id, cost_usd FROM fct_llm_calls ORDER BY call_id DESC", Scope.platform(), limit=2)
    assert top.rows() == [("c4", Decimal("9.00")), ("c3", Decimal("7.00"))]
    assert reader.select("SELECT call_id FROM fct_llm_calls", acme, limit=10)["call_id"].sort().to_list() == [
        "c1",
        "c2",
    ]
    empty = reader.select("SELECT call_id FROM fct_llm_calls", acme, limit=0)
    assert empty.height == 0 and empty.columns == ["call_id"]
    # A result far too large to materialise comes back capped, quickly; repeated names stay distinct.
    huge = reader.select("SELECT r.range AS n, r.range AS n FROM range(1000000000000) r", acme, limit=3)
    assert huge.rows() == [(0, 0), (1, 1), (2, 2)] and huge.columns == ["n", "n_1"]
    with pytest.raises(MartQueryError, match="negative"):
        reader.select("SELECT 1", acme, limit=-1)


def test_select_timeout_stops_the_query_in_the_database(reader: MartReader) -> None:
    started = time.monotonic()
    with pytest.raises(MartQueryTimeout, match="longer than 0.3s"):
        reader.select(
            "SELECT count(*) FROM range(1000000000) a, range(1000000) b", Scope.tenant("acme"), timeout_seconds=0.3
        )
    assert time.monotonic() - started < 10
    # The reader is unharmed and a fast query under a timeout is answered normally.
    fast = reader.select("SELECT count(*) AS n FROM fct_llm_calls", Scope.tenant("acme"), timeout_seconds=5)
    assert fast["n"][0] == 2


def test_engine_errors_are_query_errors_not_tracebacks(reader: MartReader) -> None:
    with pytest.raises(MartQueryError, match="query failed"):
        reader.select("SELECT CAST(call_id AS INTEGER) FROM fct_llm_calls", Scope.tenant("acme"))
    with pytest.raises(SqlSyntaxError, match="does not parse"):
        reader.select("SELECT * FROM (", Scope.tenant("acme"))


def test_select_binds_parameters(reader: MartReader) -> None:
    frame = reader.select(
        "SELECT call_id FROM fct_llm_calls WHERE model_name = $model ORDER BY call_id",
        Scope.platform(),
        {"model": "gpt-large' OR '1'='1"},
    )
    assert frame.height == 0  # the value is data, not SQL
    frame = reader.select(
        "SELECT call_id FROM fct_llm_calls WHERE model_name = $m", Scope.platform(), {"m": "gpt-large"}
    )
    assert sorted(frame["call_id"]) == ["c2", "c4"]


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT * FROM raw.events", "schema 'raw'"),
        ("SELECT * FROM read_csv('/etc/passwd')", "read_csv"),
        ("SELECT * FROM '/etc/passwd'", "not a known mart"),
        ("SELECT * FROM information_schema.tables", "schema 'information_schema'"),
        ("SELECT * FROM duckdb_settings()", "not allowed"),
        ("SELECT current_setting('threads')", "current_setting"),
        ("DELETE FROM marts.fct_llm_calls", "only SELECT"),
        ("SELECT 1; DROP TABLE marts.dim_tenants", "exactly one"),
        ("ATTACH '/tmp/x.duckdb' AS x", "SELECT"),
        ("SELECT * FROM other.marts.dim_tenants", "other databases"),
    ],
)
def test_select_refuses_anything_but_marts(reader: MartReader, sql: str, message: str) -> None:
    with pytest.raises(UnsafeQuery, match=message):
        reader.select(sql, Scope.tenant("acme"))


def test_platform_marts_need_a_platform_scope(reader: MartReader) -> None:
    with pytest.raises(UnsafeQuery, match="platform-wide"):
        reader.read("fct_config_versions", Scope.tenant("acme"))
    assert reader.read("fct_config_versions", Scope.platform()).height == 1


def test_the_connection_itself_refuses_files(reader: MartReader) -> None:
    """The second layer: even SQL that slipped past the guard cannot read files or loosen settings."""
    with reader._duckdb_connect() as con:
        with pytest.raises(duckdb.PermissionException):
            con.execute("SELECT * FROM read_csv('/etc/passwd')")
        with pytest.raises(duckdb.Error, match="Cannot enable external access"):
            con.execute("SET enable_external_access = true")
        with pytest.raises(duckdb.Error):
            con.execute("CREATE TABLE marts.x (i INTEGER)")


def test_a_republished_warehouse_is_read_at_once(reader: MartReader) -> None:
    settings = reader.settings
    assert reader.read("dim_tenants", Scope.platform()).height == 3
    with duckdb.connect(str(settings.duckdb_path)) as con:
        con.execute("INSERT INTO marts.dim_tenants VALUES ('umbrella', 'Umbrella')")
        con.execute("CREATE TABLE marts.fct_new (tenant_id VARCHAR)")
    publish(settings.duckdb_path, settings.published_duckdb_path)
    assert reader.read("dim_tenants", Scope.platform()).height == 4
    assert "fct_new" in reader.marts()  # the catalog follows the published file


def test_a_republished_warehouse_is_read_at_once_while_older_reads_are_open(reader: MartReader) -> None:
    """DuckDB shares one instance per path in a process: readers must not stay on the version an open read holds."""
    settings = reader.settings
    with reader._duckdb_connect() as still_reading:  # e.g. another dashboard session's query, in another thread
        with duckdb.connect(str(settings.duckdb_path)) as con:
            con.execute("INSERT INTO marts.dim_tenants VALUES ('umbrella', 'Umbrella')")
        publish(settings.duckdb_path, settings.published_duckdb_path)
        assert reader.read("dim_tenants", Scope.platform()).height == 4
        assert still_reading.execute("SELECT count(*) FROM marts.dim_tenants").fetchone() == (3,)  # its own snapshot
    assert published_versions(settings.published_duckdb_path) == [settings.published_duckdb_path.resolve()]


WRITER = textwrap.dedent(
    """
    import sys, duckdb
    from pathlib import Path
    from agentprovision.warehouse import publish
    live, published, rounds = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    for n in range(rounds):
        with duckdb.connect(str(live)) as con:
            # a rebuild: the mart is replaced whole, as dbt does, and grows by one row each round
            con.execute("CREATE OR REPLACE TABLE marts.dim_tenants AS "
                        "SELECT * FROM marts.dim_tenants UNION ALL SELECT 'acme', 'Acme ' || $n", {"n": n})
        publish(live, published)
    print("done", rounds)
    """
)

READER = textwrap.dedent(
    """
    import os, sys
    from agentprovision.marts import MartReader, Scope
    from agentprovision.settings import load_settings
    env = {"AGENTPROVISION_STATE_DIR": sys.argv[1], "AGENTPROVISION_DUCKDB_PATH": sys.argv[2]}
    reader = MartReader(load_settings(env))
    print("ready", flush=True)
    reads, errors, seen = 0, 0, set()
    while not os.path.exists(sys.argv[3]) or reads < 5:  # until the writer is done, and a few reads at least
        try:
            seen.add(reader.read("dim_tenants", Scope.tenant("acme")).height)
            reads += 1
        except Exception as exc:
            errors += 1
            print("ERROR", type(exc).__name__, exc, file=sys.stderr)
    print(reads, errors, len(seen), flush=True)
    """
)


def test_readers_keep_working_while_the_pipeline_republishes(reader: MartReader, env: dict[str, str]) -> None:
    """A writer process rebuilds and publishes in a loop; readers in threads and in another process see no error."""
    settings = reader.settings
    rounds = 40
    stop_file = settings.state_dir / "writer-done"
    other_process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            READER,
            env["AGENTPROVISION_STATE_DIR"],
            env["AGENTPROVISION_DUCKDB_PATH"],
            str(stop_file),
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert other_process.stdout is not None and other_process.stdout.readline().strip() == "ready"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(settings.duckdb_path), str(settings.published_duckdb_path), str(rounds)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    errors: list[BaseException] = []
    heights: set[int] = set()
    reads = [0]
    stop = threading.Event()

    def read_continuously() -> None:
        while not stop.is_set():
            try:
                heights.add(reader.read("dim_tenants", Scope.tenant("acme")).height)
                reader.select("SELECT count(*) FROM dim_tenants", Scope.platform())
                reads[0] += 1
            except BaseException as exc:  # noqa: BLE001 - every failure counts
                errors.append(exc)

    threads = [threading.Thread(target=read_continuously) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        out, err = writer.communicate(timeout=300)
    finally:
        time.sleep(0.2)
        stop.set()
        for thread in threads:
            thread.join()
        stop_file.parent.mkdir(parents=True, exist_ok=True)
        stop_file.touch()
    other_out, other_err = other_process.communicate(timeout=120)

    assert writer.returncode == 0, err
    assert errors == [], errors[:3]
    assert reads[0] > 10 and len(heights) > 1, (reads[0], heights)  # the readers really overlapped the rebuilds
    other_reads, other_errors, _ = (int(x) for x in other_out.split())
    assert other_process.returncode == 0 and other_errors == 0 and other_reads >= 5, other_err
    assert reader.read("dim_tenants", Scope.tenant("acme")).height == 1 + rounds


# --- PostgreSQL target ---------------------------------------------------------------------------------------


@pytest.fixture
def pg_reader(postgres_url: str, env: dict[str, str]) -> MartReader:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(
            """
            CREATE SCHEMA marts;
            CREATE TABLE marts.fct_llm_calls (call_id text, tenant_id text, call_date date, model_name text,
                                              prompt_tokens bigint, cost_usd numeric(18, 8));
            CREATE TABLE marts.fct_config_versions (config_version integer, applied_by text);
            INSERT INTO marts.fct_llm_calls VALUES
                ('c1', 'acme', '2026-10-01', 'gpt-small', 100, 0.50),
                ('c2', 'acme', '2026-10-02', 'gpt-large', 200, 1.25),
                ('c3', 'globex', '2026-10-01', 'gpt-small', 300, 7.00);
            INSERT INTO marts.fct_config_versions VALUES (1, 'admin');
            """
        )
    settings = load_settings(
        {**env, "AGENTPROVISION_WAREHOUSE_TARGET": "postgres", "AGENTPROVISION_WAREHOUSE_URL": postgres_url}
    )
    return MartReader(settings)


@pytest.mark.postgres
def test_postgres_reads_are_scoped_and_read_only(pg_reader: MartReader) -> None:
    assert pg_reader.available()
    acme = pg_reader.read("fct_llm_calls", Scope.tenant("acme"), order_by=["call_id"])
    assert acme["call_id"].to_list() == ["c1", "c2"]
    total = pg_reader.select(
        "SELECT sum(cost_usd) AS total FROM fct_llm_calls WHERE call_date >= $since",
        Scope.tenant("acme"),
        {"since": "2026-10-02"},
    )
    assert total["total"][0] == Decimal("1.25")
    like = pg_reader.select("SELECT call_id FROM fct_llm_calls WHERE model_name LIKE '%small'", Scope.tenant("acme"))
    assert like["call_id"].to_list() == ["c1"]  # a literal % is SQL, not a driver placeholder
    where = pg_reader.read("fct_llm_calls", Scope.platform(), where={"model_name": "x' OR '1'='1"})
    assert where.height == 0
    with pytest.raises(UnsafeQuery, match="platform-wide"):
        pg_reader.read("fct_config_versions", Scope.tenant("acme"))
    with pytest.raises(UnsafeQuery):
        pg_reader.select("SELECT * FROM pg_catalog.pg_user", Scope.platform())
    with pytest.raises(MartQueryError, match="no value"):
        pg_reader.select("SELECT * FROM fct_llm_calls WHERE call_id = $missing", Scope.platform())


@pytest.mark.postgres
def test_postgres_select_limit_and_timeout(pg_reader: MartReader) -> None:
    capped = pg_reader.select("SELECT call_id FROM fct_llm_calls ORDER BY call_id", Scope.platform(), limit=2)
    assert capped["call_id"].to_list() == ["c1", "c2"]
    acme = pg_reader.select("SELECT call_id FROM fct_llm_calls ORDER BY call_id", Scope.tenant("acme"), limit=5)
    assert acme["call_id"].to_list() == ["c1", "c2"]
    with pytest.raises(MartQueryTimeout, match="longer than 0.2s"):
        pg_reader.select("SELECT count(*) FROM generate_series(1, 2000000000) g", Scope.platform(), timeout_seconds=0.2)


def test_postgres_unreachable_is_unavailable(env: dict[str, str]) -> None:
    settings = load_settings(
        {
            **env,
            "AGENTPROVISION_WAREHOUSE_TARGET": "postgres",
            "AGENTPROVISION_WAREHOUSE_URL": "postgresql://nobody@127.0.0.1:1/none",
        }
    )
    reader = MartReader(settings)
    assert not reader.available()
    with pytest.raises(WarehouseUnavailable, match="cannot be reached"):
        reader.read("fct_llm_calls", Scope.platform())
