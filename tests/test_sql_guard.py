"""The SQL guard against hostile input: refusals by the parser-level rules, and scoping proven on DuckDB.

Refusals are checked on the guard alone. Queries the guard lets through are run on a real DuckDB
warehouse with two tenants and compared with the same query run, unscoped, on a copy holding only
the caller's rows: equal results mean nothing of the other tenant leaked, not even through a count.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest

from agentprovision.sql_guard import SqlSyntaxError
from agents.tools.sql_guard import SqlRefused, scope_select
from agents.tools.warehouse import run_query

MARTS = {
    "fct_llm_calls": ["call_id", "tenant_id", "model_name", "cost_usd", "prompt_tokens", "occurred_at"],
    "fct_agent_runs": ["run_id", "tenant_id", "agent_id", "status", "cost_usd"],
    "dim_models": ["model_name", "provider"],
}
TENANTS = ("acme", "globex")


def build_warehouse(path: Path, tenants: tuple[str, ...] = TENANTS) -> Path:
    """A small warehouse in the real layout: marts with tenant_id, a platform mart, raw and main tables."""
    con = duckdb.connect(str(path))
    con.execute("CREATE SCHEMA marts; CREATE SCHEMA raw")
    con.execute(
        "CREATE TABLE marts.fct_llm_calls (call_id VARCHAR, tenant_id VARCHAR, model_name VARCHAR, "
        "cost_usd DECIMAL(18, 6), prompt_tokens INTEGER, occurred_at TIMESTAMP)"
    )
    con.execute(
        "CREATE TABLE marts.fct_agent_runs (run_id VARCHAR, tenant_id VARCHAR, agent_id VARCHAR, status VARCHAR, "
        "cost_usd DECIMAL(18, 6))"
    )
    con.execute("CREATE TABLE marts.dim_models (model_name VARCHAR, provider VARCHAR)")
    con.execute("CREATE TABLE raw.events (tenant_id VARCHAR, payload VARCHAR)")
    con.execute("CREATE TABLE main.secrets (tenant_id VARCHAR, value VARCHAR)")
    models = ["gpt-small", "gpt-large", "claude-mid"]
    for t_index, tenant in enumerate(tenants):
        for i in range(12 + 5 * t_index):  # different sizes, so a leaked count shows
            con.execute(
                "INSERT INTO marts.fct_llm_calls VALUES (?, ?, ?, ?, ?, TIMESTAMP '2026-03-01' + INTERVAL (?) HOUR)",
                [f"{tenant}-call-{i}", tenant, models[i % 3], (i + 1) * (t_index + 1) / 100, 100 * i + t_index, i],
            )
        for i in range(4 + 3 * t_index):
            con.execute(
                "INSERT INTO marts.fct_agent_runs VALUES (?, ?, ?, ?, ?)",
                [f"{tenant}-run-{i}", tenant, f"{tenant}-agent-{i % 2}", "succeeded" if i % 3 else "failed", i / 10],
            )
        con.execute("INSERT INTO raw.events VALUES (?, ?)", [tenant, f"{tenant}-raw"])
        con.execute("INSERT INTO main.secrets VALUES (?, ?)", [tenant, f"{tenant}-secret"])
    con.executemany("INSERT INTO marts.dim_models VALUES (?, ?)", [[m, "openai"] for m in models])
    con.close()
    return path


@pytest.fixture(scope="module")
def warehouses(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("warehouse")
    return {"both": build_warehouse(base / "both.duckdb")}


def only_rows_of(path: Path, tenant: str, sql: str) -> list[tuple[Any, ...]]:
    """The oracle: the query unscoped, on a copy from which every other tenant's mart rows are deleted."""
    con = duckdb.connect(":memory:")
    con.execute(f"ATTACH '{path}' AS src (READ_ONLY)")
    con.execute("CREATE SCHEMA marts")
    for mart in ("fct_llm_calls", "fct_agent_runs"):
        con.execute(f"CREATE TABLE marts.{mart} AS SELECT * FROM src.marts.{mart} WHERE tenant_id = ?", [tenant])
    con.execute("SET search_path = 'marts,main'")
    rows = con.execute(sql).fetchall()
    con.close()
    return rows


def canonical(rows: list[Any]) -> list[str]:
    return sorted(repr(tuple(row)) for row in rows)


def assert_scoped(warehouse: Path, tenant: str, sql: str) -> dict[str, Any]:
    result = run_query(warehouse, tenant, sql, max_rows=1000)
    assert not result["truncated"]
    expected = only_rows_of(warehouse, tenant, sql)
    got = [tuple(_back(v) for v in row) for row in result["rows"]]
    want = [tuple(_back(_plain(v)) for v in row) for row in expected]
    assert canonical(got) == canonical(want), sql
    other = next(t for t in TENANTS if t != tenant)
    assert other not in repr(result["rows"]), sql
    return result


def _plain(value: Any) -> Any:
    from agents.tools.warehouse import _plain as plain

    return plain(value)


def _back(value: Any) -> Any:
    # Decimals come back as strings; compare numerically so 0.10 and 0.1 agree.
    try:
        return round(float(value), 6) if isinstance(value, str) and value.replace(".", "", 1).isdigit() else value
    except ValueError:
        return value


# --- refusals: at least sixty hostile inputs ----------------------------------------------------------

HOSTILE = [
    # files, table functions, replacement scans
    ("SELECT * FROM read_csv('/etc/passwd')", "read_csv"),
    ("SELECT * FROM read_csv_auto('/etc/passwd')", "read_csv_auto"),
    ("SELECT * FROM read_parquet('s3://bucket/x.parquet')", "read_parquet"),
    ("SELECT * FROM read_json('/tmp/x.json')", "read_json"),
    ("SELECT * FROM read_text('/etc/passwd')", "read_text"),
    ("SELECT * FROM read_blob('/etc/shadow')", "read_blob"),
    ("SELECT * FROM glob('/home/*')", "glob"),
    ("SELECT * FROM '/etc/passwd'", "not a known mart"),
    ("SELECT * FROM 'data.csv'", "not a known mart"),
    ('SELECT * FROM "/etc/passwd"', "not a known mart"),
    ("SELECT * FROM sniff_csv('/etc/passwd')", "sniff_csv"),
    ("SELECT * FROM parquet_metadata('x.parquet')", "parquet_metadata"),
    ("SELECT * FROM sqlite_scan('other.db', 't')", "sqlite_scan"),
    ("SELECT * FROM postgres_scan('host=x', 'public', 't')", "postgres_scan"),
    ("SELECT * FROM iceberg_scan('x')", "iceberg_scan"),
    ("SELECT * FROM delta_scan('x')", "delta_scan"),
    ("SELECT * FROM query_table('marts.fct_llm_calls')", "query_table"),
    ("SELECT * FROM query('SELECT * FROM marts.fct_llm_calls')", "query"),
    ("SELECT * FROM marts.fct_llm_calls WHERE call_id IN (SELECT * FROM read_csv('/etc/passwd'))", "read_csv"),
    ("SELECT (SELECT count(*) FROM read_text('/etc/passwd'))", "read_text"),
    # catalog, settings, environment
    ("SELECT * FROM duckdb_settings()", "duckdb_settings"),
    ("SELECT * FROM duckdb_tables()", "duckdb_tables"),
    ("SELECT * FROM duckdb_databases()", "duckdb_databases"),
    ("SELECT * FROM duckdb_secrets()", "duckdb_secrets"),
    ("SELECT * FROM duckdb_extensions()", "duckdb_extensions"),
    ("SELECT * FROM pragma_table_info('fct_llm_calls')", "pragma_table_info"),
    ("SELECT * FROM pragma_database_list()", "pragma_database_list"),
    ("SELECT current_setting('enable_external_access')", "current_setting"),
    ("SELECT getenv('HOME')", "getenv"),
    ("SELECT * FROM marts.fct_llm_calls WHERE model_name = getenv('USER')", "getenv"),
    ("SELECT * FROM information_schema.tables", "schema"),
    ("SELECT * FROM information_schema.columns WHERE table_schema = 'raw'", "schema"),
    ("SELECT * FROM pg_catalog.pg_tables", "schema"),
    ("SELECT * FROM duckdb_columns()", "duckdb_columns"),
    ("SELECT * FROM which_secret('s3://x', 's3')", "which_secret"),
    # other schemas, databases, catalogs
    ("SELECT * FROM main.secrets", "schema"),
    ("SELECT * FROM raw.events", "schema"),
    ("SELECT * FROM secrets", "not a known mart"),
    ("SELECT * FROM warehouse.marts.fct_llm_calls", "other databases"),
    ("SELECT * FROM other_db.marts.fct_llm_calls", "other databases"),
    ('SELECT * FROM "raw"."events"', "schema"),
    ("SELECT * FROM staging.stg_events", "schema"),
    ("SELECT * FROM marts.fct_llm_calls JOIN main.secrets USING (tenant_id)", "schema"),
    ("SELECT * FROM marts.fct_llm_calls UNION ALL SELECT tenant_id, value, 1, 1, 1, now() FROM raw.events", "schema"),
    ("SELECT * FROM marts.dim_models", "platform-wide"),
    ("SELECT * FROM marts.fct_unknown", "not a known mart"),
    ("SELECT * FROM ｆct_llm_calls", "not a known mart"),  # fullwidth letter
    ("SELECT * FROM fct_llm_calls\u200b", "not a known mart"),  # zero-width space inside the name
    # statements that are not a single SELECT
    ("SELECT 1; SELECT 2", "2 statements"),
    ("SELECT * FROM marts.fct_llm_calls; DROP TABLE marts.fct_llm_calls", "2 statements"),
    ("SELECT * FROM marts.fct_llm_calls -- harmless\n; ATTACH 'x.db' AS x", "2 statements"),
    ("SELECT 1; -- trailing\nSELECT 2", "statements; send exactly one"),
    ("COPY (SELECT * FROM marts.fct_llm_calls) TO '/tmp/out.csv'", "COPY"),
    ("COPY marts.fct_llm_calls TO '/tmp/out.parquet' (FORMAT parquet)", "COPY"),
    ("ATTACH '/tmp/other.duckdb' AS other", "ATTACH"),
    ("DETACH warehouse", "DETACH"),
    ("INSTALL httpfs", "INSTALL"),
    ("LOAD httpfs", "not"),
    ("PRAGMA database_list", "PRAGMA"),
    ("SET enable_external_access = true", "SET"),
    ("RESET lock_configuration", "not"),
    ("CALL pragma_version()", "not"),
    ("USE raw", "USE"),
    ("DESCRIBE marts.fct_llm_calls", "DESCRIBE"),
    ("SUMMARIZE marts.fct_llm_calls", "not"),
    ("SHOW TABLES", "SHOW"),
    ("EXPORT DATABASE '/tmp/dump'", "not"),
    ("CREATE TABLE x AS SELECT * FROM marts.fct_llm_calls", "CREATE"),
    ("CREATE MACRO m() AS TABLE SELECT * FROM raw.events", "CREATE"),
    ("INSERT INTO marts.fct_llm_calls SELECT * FROM marts.fct_llm_calls", "INSERT"),
    ("UPDATE marts.fct_llm_calls SET tenant_id = 'acme'", "UPDATE"),
    ("DELETE FROM marts.fct_llm_calls", "DELETE"),
    ("DROP TABLE marts.fct_llm_calls", "DROP"),
    ("ALTER TABLE marts.fct_llm_calls RENAME TO x", "ALTER"),
    ("SELECT * INTO copied FROM marts.fct_llm_calls", "INTO"),
    ("SELECT * FROM marts.fct_llm_calls FOR UPDATE", "FOR UPDATE"),
    ("BEGIN TRANSACTION", "not"),
    ("CHECKPOINT", "not"),
    ("WITH x AS (SELECT 1) INSERT INTO marts.fct_llm_calls SELECT * FROM x", "INSERT"),
    # parameters, time travel, odd syntax
    ("SELECT * FROM marts.fct_llm_calls WHERE tenant_id = $1", "parameters"),
    ("SELECT * FROM marts.fct_llm_calls WHERE tenant_id = ?", "parameters"),
    ("SELECT * FROM marts.fct_llm_calls AT (VERSION => 1)", "not supported"),
    ("", "empty"),
    ("   -- only a comment", "no statement"),
    ("/* nothing */", "no statement"),
    ("SELECT * FROM marts.fct_llm_calls WHERE (", "does not parse"),
    ("SELECT 'unterminated", "does not parse"),
    ("SELECT 1\x00; DROP TABLE x", "NUL"),
    ("SELECT " + "1 + " * 6000 + "1", "characters long"),
    # CTEs that would resolve to real tables: a non-recursive CTE cannot see itself
    ("WITH secrets AS (SELECT * FROM secrets) SELECT * FROM secrets", "not a known mart"),
    ("WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a", "not a known mart"),
    ("SELECT * FROM (WITH c AS (SELECT 1) SELECT 1) s, c", "not a known mart"),
    ("SELECT marts.fct_llm_calls.cost_usd, main.secrets.value FROM marts.fct_llm_calls", "table.column"),
]


def test_there_are_at_least_sixty_hostile_inputs() -> None:
    assert len(HOSTILE) >= 60


@pytest.mark.parametrize(("sql", "reason"), HOSTILE, ids=[str(i) for i in range(len(HOSTILE))])
def test_hostile_sql_is_refused_with_a_reason(sql: str, reason: str) -> None:
    with pytest.raises(SqlRefused) as refused:
        scope_select(sql, "acme", MARTS)
    assert reason.lower() in str(refused.value).lower()


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT count(*) FROM marts.fct_llm_calls; -- note",
        "SELECT count(*) FROM marts.fct_llm_calls; /* note */",
        "SELECT count(*) FROM marts.fct_llm_calls;\n-- first\n-- second\n",
        "SELECT count(*) FROM marts.fct_llm_calls;;",
    ],
)
def test_a_comment_or_empty_statement_after_the_final_semicolon_is_not_a_second_statement(sql: str) -> None:
    scoped = scope_select(sql, "acme", MARTS)
    assert scoped.count("\"tenant_id\" = 'acme'") == 1


def test_a_comment_between_two_statements_still_counts_both() -> None:
    with pytest.raises(SqlRefused, match="2 statements"):
        scope_select("SELECT 1; -- note\nDROP TABLE marts.fct_llm_calls", "acme", MARTS)


SYNTAX_MISTAKES = [
    ("", "empty"),
    ("   ", "empty"),
    ("-- only a comment", "no statement"),
    ("SELECT * FROM marts.fct_llm_calls WHERE (", "does not parse"),
    ("SELECT 'unterminated", "does not parse"),
    ("SELECT " + "1 + " * 6000 + "1", "characters long"),
]
POLICY_REFUSALS = [
    ("SELECT 1; SELECT 2", "2 statements"),
    ("DROP TABLE marts.fct_llm_calls", "DROP"),
    ("SELECT * FROM raw.events", "schema"),
    ("SELECT * FROM read_csv('/etc/passwd')", "read_csv"),
]


@pytest.mark.parametrize(("sql", "reason"), SYNTAX_MISTAKES)
def test_malformed_sql_is_a_syntax_error_which_is_still_a_refusal(sql: str, reason: str) -> None:
    with pytest.raises(SqlSyntaxError, match=reason) as raised:
        scope_select(sql, "acme", MARTS)
    assert isinstance(raised.value, SqlRefused)  # every existing `except SqlRefused` keeps catching it


@pytest.mark.parametrize(("sql", "reason"), POLICY_REFUSALS)
def test_policy_refusals_are_not_syntax_errors(sql: str, reason: str) -> None:
    with pytest.raises(SqlRefused, match=reason) as raised:
        scope_select(sql, "acme", MARTS)
    assert not isinstance(raised.value, SqlSyntaxError)


def test_bad_tenant_ids_are_refused_before_anything_is_parsed() -> None:
    for tenant in ("", "ACME", "acme' OR '1'='1", "a" * 80, "../globex"):
        with pytest.raises(SqlRefused, match="not a tenant id"):
            scope_select("SELECT * FROM marts.fct_llm_calls", tenant, MARTS)


def test_platform_scope_checks_the_same_rules_without_a_filter() -> None:
    scoped = scope_select("SELECT count(*) FROM marts.dim_models", None, MARTS)
    assert "tenant_id" not in scoped
    with pytest.raises(SqlRefused):
        scope_select("SELECT * FROM raw.events", None, MARTS)


# --- rewrites ---------------------------------------------------------------------------------------


def test_every_spelling_of_a_mart_becomes_the_tenants_subquery() -> None:
    for sql in (
        "SELECT * FROM marts.fct_llm_calls",
        "SELECT * FROM fct_llm_calls",
        'SELECT * FROM "marts"."fct_llm_calls"',
        'SELECT * FROM "MARTS"."FCT_LLM_CALLS"',
        "select * from MARTS.Fct_Llm_Calls",
        "FROM marts.fct_llm_calls",
    ):
        scoped = scope_select(sql, "acme", MARTS)
        assert scoped.count("\"tenant_id\" = 'acme'") == 1, sql
        assert scoped.count('"marts"."fct_llm_calls"') == 1, sql


def test_the_tenant_literal_cannot_be_escaped() -> None:
    scoped = scope_select("SELECT * FROM fct_llm_calls", "acme", MARTS)
    assert "WHERE \"tenant_id\" = 'acme')" in scoped


def test_catalog_qualifies_rewritten_references() -> None:
    scoped = scope_select("SELECT * FROM fct_agent_runs r", "acme", MARTS, catalog="warehouse")
    assert '"warehouse"."marts"."fct_agent_runs"' in scoped and "AS r" in scoped


def test_a_mapping_without_tenant_id_cannot_be_read_by_a_tenant_but_a_set_trusts_the_caller() -> None:
    with pytest.raises(SqlRefused, match="platform-wide"):
        scope_select("SELECT * FROM dim_models", "acme", MARTS)
    assert "tenant_id" in scope_select("SELECT * FROM dim_models", "acme", {"dim_models"})


# --- bypass attempts that parse as allowed SELECTs: proven scoped on a real warehouse ------------------

BYPASSES = [
    "SELECT * FROM marts.fct_llm_calls WHERE tenant_id = 'globex'",
    "SELECT * FROM marts.fct_llm_calls WHERE tenant_id = 'acme' OR 1=1",
    "SELECT * FROM marts.fct_llm_calls WHERE 1=1 OR tenant_id <> 'acme'",
    "SELECT count(*), sum(cost_usd) FROM marts.fct_llm_calls",
    "SELECT tenant_id, count(*) FROM fct_llm_calls GROUP BY ALL",
    "SELECT * FROM marts.fct_llm_calls UNION ALL SELECT * FROM marts.fct_llm_calls WHERE tenant_id = 'globex'",
    "SELECT call_id FROM fct_llm_calls UNION SELECT run_id FROM fct_agent_runs",
    "SELECT call_id FROM fct_llm_calls EXCEPT SELECT call_id FROM fct_llm_calls WHERE tenant_id = 'acme'",
    "SELECT call_id FROM fct_llm_calls INTERSECT SELECT call_id FROM fct_llm_calls WHERE 1=1 OR true",
    "WITH everything AS (SELECT * FROM marts.fct_llm_calls WHERE 1=1 OR 1=1) SELECT count(*) FROM everything",
    "WITH a AS (SELECT * FROM fct_llm_calls), b AS (SELECT * FROM a WHERE tenant_id <> 'acme') SELECT * FROM b",
    "WITH fct_llm_calls AS (SELECT * FROM fct_llm_calls) SELECT count(*) FROM fct_llm_calls",
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT n, "
    "(SELECT count(*) FROM fct_llm_calls) FROM r",
    "SELECT * FROM (SELECT * FROM (SELECT * FROM marts.fct_llm_calls) x WHERE 1=1 OR true) y",
    "SELECT (SELECT count(*) FROM marts.fct_llm_calls) AS n",
    "SELECT * FROM marts.fct_agent_runs r WHERE EXISTS "
    "(SELECT 1 FROM fct_llm_calls c WHERE c.tenant_id <> r.tenant_id)",
    "SELECT * FROM fct_agent_runs WHERE tenant_id IN (SELECT tenant_id FROM fct_llm_calls WHERE tenant_id = 'globex')",
    "SELECT r.run_id, c.call_id FROM fct_agent_runs r JOIN fct_llm_calls c ON true",
    "SELECT r.run_id, c.call_id FROM fct_agent_runs r FULL OUTER JOIN fct_llm_calls c ON r.tenant_id <> c.tenant_id",
    "SELECT * FROM fct_agent_runs r CROSS JOIN fct_llm_calls c WHERE c.tenant_id = 'globex'",
    "SELECT * FROM fct_agent_runs r, "
    "LATERAL (SELECT count(*) AS n FROM fct_llm_calls c WHERE c.tenant_id <> r.tenant_id)",
    "SELECT * FROM fct_agent_runs POSITIONAL JOIN fct_llm_calls",
    'SELECT "T".call_id FROM "MARTS"."FCT_LLM_CALLS" AS "T" WHERE "T"."TENANT_ID" = \'globex\' OR 1=1',
    "SELECT marts.fct_llm_calls.call_id FROM marts.fct_llm_calls",
    "SELECT fct_llm_calls FROM fct_llm_calls",  # a table as a struct of its row
    "SELECT * FROM fct_llm_calls /* WHERE tenant_id = 'acme' */ -- OR 1=1",
    "SELECT * FROM fct_llm_calls t(a, b, c)",
    "SELECT * FROM fct_llm_calls PIVOT (count(*) FOR model_name IN ('gpt-small', 'gpt-large'))",
    "SELECT * FROM fct_llm_calls USING SAMPLE 100 PERCENT (bernoulli)",
    "SELECT model_name, sum(cost_usd) OVER (PARTITION BY tenant_id) FROM fct_llm_calls QUALIFY true",
    "SELECT * FROM (VALUES ('globex')) v(t) JOIN fct_llm_calls c ON c.tenant_id = v.t",
    "SELECT * FROM range(3) r, fct_agent_runs",
    "SELECT unnest([1, 2]) AS n, (SELECT max(call_id) FROM fct_llm_calls)",
]


@pytest.mark.parametrize("sql", BYPASSES, ids=[str(i) for i in range(len(BYPASSES))])
def test_allowed_queries_only_ever_see_the_callers_rows(warehouses: dict[str, Path], sql: str) -> None:
    assert_scoped(warehouses["both"], "acme", sql)
    assert_scoped(warehouses["both"], "globex", sql)


def test_a_filter_on_the_other_tenant_finds_nothing(warehouses: dict[str, Path]) -> None:
    result = run_query(warehouses["both"], "acme", "SELECT * FROM marts.fct_llm_calls WHERE tenant_id = 'globex'")
    assert result["rows"] == []
    counted = run_query(warehouses["both"], "acme", "SELECT count(*) FROM marts.fct_llm_calls WHERE 1=1 OR 1=1")
    assert counted["rows"] == [[12]]


def test_errors_raised_by_the_query_only_ever_see_the_callers_rows(tmp_path: Path) -> None:
    """A predicate that fails on another tenant's row would leak it through the error message (or its mere
    occurrence), if the engine evaluated it before the tenant filter. Interleaved rows across many vectors."""
    path = build_warehouse(tmp_path / "bulk.duckdb")
    con = duckdb.connect(str(path))
    con.execute(
        "INSERT INTO marts.fct_llm_calls SELECT t || '-bulk-' || i, t, 'm', i / 100, i, TIMESTAMP '2026-01-01' "
        "FROM (SELECT i, CASE WHEN i % 2 = 0 THEN 'acme' ELSE 'globex' END AS t FROM range(300000) r(i))"
    )
    con.close()
    trap = "CASE WHEN tenant_id = 'globex' THEN error('LEAK ' || call_id) ELSE true END"
    queries = [
        f"SELECT count(*) FROM fct_llm_calls WHERE {trap}",
        f"SELECT count(*) FROM (SELECT {trap} AS x FROM fct_llm_calls) s",
        f"SELECT count(*) FROM fct_llm_calls GROUP BY {trap}",
        f"SELECT count(*) FROM fct_llm_calls c JOIN fct_agent_runs r ON {trap.replace('tenant_id', 'c.tenant_id')}",
        "SELECT count(*) FROM fct_llm_calls WHERE CAST(CASE WHEN tenant_id = 'globex' THEN call_id ELSE '1' END AS INT)"
        " = 1",
        "SELECT max(CASE WHEN tenant_id <> 'acme' THEN CAST(call_id AS INT) END) FROM fct_llm_calls",
        "SELECT count(*) FROM fct_llm_calls WHERE prompt_tokens / (CASE WHEN tenant_id = 'globex' THEN 0 ELSE 1 END)"
        " >= 0",
    ]
    for sql in queries:
        try:
            result = run_query(path, "acme", sql)
        except Exception as exc:  # an error is acceptable only if it is about the caller's own rows
            assert "globex" not in str(exc) and "LEAK" not in str(exc), sql
        else:
            assert "globex" not in repr(result["rows"]), sql
