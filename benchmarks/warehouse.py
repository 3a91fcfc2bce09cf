"""Warehouse benchmark: ingestion, full dbt build and incremental build at millions of events.

    python3 -m uv run python benchmarks/warehouse.py --events 10000000 [--ingest-events 1000000] [--no-write]

Three measurements, each against a baseline that does the same work without the platform's machinery:

1. Ingestion. The platform's path is `agentprovision.warehouse.load_raw`: events committed in the ops
   store (SQLite here) are read past the watermark and appended to `raw.events` in one transaction,
   in Arrow batches of `LOAD_BATCH_ROWS`. The baseline is a plain DuckDB `INSERT ... SELECT` of the
   same rows as Arrow tables. Both are timed on the same `--ingest-events` rows (by default at most
   1M, to keep the run short; the figure is a rate). Goal: at least 0.5x. With `--postgres-ops ADMIN_URL`
   the same rows are also loaded from a PostgreSQL ops store (the production setup; read through Arrow's
   ADBC driver); the PostgreSQL server's own CPU is not counted there. The comparison runs in
   `--ingest-rounds` alternating rounds (3 by default) and reports the median round: on the shared
   machine one load can take half as long again as the next.
2. Full build. `dbt run` of the cost marts and everything upstream of them (`+rpt_chargeback_monthly`:
   staging views, fct_llm_calls, fct_cost_daily, the chargeback report) against the same
   transformations as hand-written DuckDB SQL, plus dbt's fixed start-up (parse, connect, an empty
   run). The hand-written results are checked against dbt's (row counts, cost per tenant to the cent)
   so both really do the same work. Goal: dbt <= 1.25 x hand-written + start-up. A full `dbt build`
   (every model and test) is timed as well, for information.
3. Incremental. 100,000 new events are appended (later `_loaded_at`), then the same `dbt run`
   without --full-refresh. Goal: under 5 s, judged on the wall time without dbt's fixed start-up (the
   start-up alone, parsing the project and connecting, takes about 5 s on the shared machine; the whole
   invocation's time is reported beside it).

Every step is timed in wall seconds and in CPU seconds (this process plus the dbt child processes).
The machine is shared, so wall time swings with other people's load; the ratio goals are judged on
CPU seconds, the incremental latency goal on wall time. Events come from `agentprovision.synthetic`
for the example config's tenants and agents. Figures are written between the `warehouse` markers
in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import duckdb  # noqa: E402
import polars as pl  # noqa: E402
import psycopg  # noqa: E402
import pyarrow as pa  # noqa: E402
from pyarrow import csv as pa_csv  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from agentprovision.apply import apply_config  # noqa: E402
from agentprovision.bulk_memory import large_buffers_in_heap  # noqa: E402
from agentprovision.config import load_config_dir  # noqa: E402
from agentprovision.store.db import make_engine, migrate, session_factory, transaction  # noqa: E402
from agentprovision.synthetic import generate_events  # noqa: E402
from agentprovision.warehouse import ensure_raw_schema, load_raw  # noqa: E402

DOC = REPO_ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- warehouse:begin -->", "<!-- warehouse:end -->"
DBT_PROJECT = REPO_ROOT / "dbt_project"
CONFIG_DIR = REPO_ROOT / "config"
SELECTION = "+rpt_chargeback_monthly"  # the cost marts and everything they are built from
INCREMENT = 100_000
DAYS = 90
START = date(2026, 7, 1)


def cpu_seconds() -> float:
    """CPU used so far by this process and its finished children (dbt runs in child processes)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class Stopwatch:
    """Wall and CPU seconds per step. On a shared machine wall time swings with other people's load;
    CPU time is what the step itself cost, so the goals are judged on CPU (incremental latency on wall too)."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    @contextmanager
    def __call__(self, key: str) -> Iterator[None]:
        wall, cpu = time.perf_counter(), cpu_seconds()
        yield
        self.wall[key] = time.perf_counter() - wall
        self.cpu[key] = cpu_seconds() - cpu


def log(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", flush=True)


# --- setup -----------------------------------------------------------------------------------------------


def ops_store(path: Path):  # type: ignore[no-untyped-def]
    """A SQLite ops store with the example config applied: tenants, departments, agents, models."""
    return configured_store(f"sqlite:///{path}")


def postgres_ops_store(admin_url: str):  # type: ignore[no-untyped-def]
    """A fresh PostgreSQL ops store (database ap_bench_ops, next to `admin_url`'s) with the example config."""
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS ap_bench_ops WITH (FORCE)")
        admin.execute("CREATE DATABASE ap_bench_ops")
    return configured_store(make_url(admin_url).set(database="ap_bench_ops").render_as_string(hide_password=False))


def configured_store(url: str):  # type: ignore[no-untyped-def]
    engine = make_engine(url)
    migrate(engine)
    loaded = load_config_dir(CONFIG_DIR)
    if not loaded.ok:
        raise SystemExit(f"the example config does not load: {loaded.issues[:3]}")
    with transaction(session_factory(engine)) as session:
        apply_config(session, loaded.config, actor="benchmark", source=str(CONFIG_DIR))
    return engine, loaded.config


def events(config, count: int, seed: int, start: date, first_seq: int, loaded_at: datetime) -> list[pa.Table]:  # type: ignore[no-untyped-def]
    return list(
        generate_events(
            days=DAYS, events=count, seed=seed, config=config, start=start, first_seq=first_seq, loaded_at=loaded_at
        )
    )


def fill_ops_events(engine, batches: list[pa.Table]) -> None:  # type: ignore[no-untyped-def]
    """Put events into the ops store as the platform's writer would leave them (bulk, not timed)."""
    if engine.dialect.name == "postgresql":
        copy_ops_events(engine, batches)
        return
    sql = (
        "INSERT INTO events (seq, event_id, tenant_id, kind, name, occurred_at, recorded_at, agent_id, run_id, payload)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    stamp = "%Y-%m-%d %H:%M:%S.%6f"  # SQLAlchemy's DateTime text layout on SQLite
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        for batch in batches:
            frame = pl.from_arrow(batch).with_columns(
                pl.col("occurred_at").dt.strftime(stamp), pl.col("recorded_at").dt.strftime(stamp)
            )
            columns = ["seq", "event_id", "tenant_id", "kind", "name", "occurred_at", "recorded_at"]
            cursor.executemany(sql, frame.select(*columns, "agent_id", "run_id", "payload").iter_rows())
        raw.commit()
    finally:
        raw.close()


def copy_ops_events(engine, batches: list[pa.Table]) -> None:  # type: ignore[no-untyped-def]
    columns = ["seq", "event_id", "tenant_id", "kind", "name", "occurred_at", "recorded_at", "agent_id", "run_id"]
    columns.append("payload")
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cursor:
            for batch in batches:
                text = pa.BufferOutputStream()
                pa_csv.write_csv(batch.select(columns), text, write_options=pa_csv.WriteOptions(include_header=False))
                with cursor.copy(f"COPY events ({', '.join(columns)}) FROM STDIN (FORMAT csv)") as copy:
                    copy.write(text.getvalue().to_pybytes())
        raw.commit()
    finally:
        raw.close()


def insert_arrow(path: Path, batches: list[pa.Table]) -> None:
    """The baseline: one transaction of plain INSERT ... SELECT from Arrow tables."""
    with duckdb.connect(str(path)) as con:
        ensure_raw_schema(con)
        con.execute("BEGIN TRANSACTION")
        for batch in batches:
            con.register("batch", batch)
            con.execute("INSERT INTO raw.events SELECT * FROM batch")
            con.unregister("batch")
        con.execute("COMMIT")


def ingestion_rounds(
    t: Stopwatch, rounds: int, sample: list[pa.Table], stores: dict[str, object], work: Path
) -> dict[str, list[float]]:
    """Time the plain insert and `load_raw` from each ops store in `stores` (key -> engine holding
    `sample`), alternating, `rounds` times; each writes a new warehouse file. The stopwatch keeps the
    median round of each; the CPU seconds of every round are returned."""
    expected = sum(batch.num_rows for batch in sample)
    per_round: dict[str, list[tuple[float, float]]] = {"raw_insert": [], **{key: [] for key in stores}}
    for number in range(rounds):
        log(f"ingestion round {number + 1} of {rounds}")
        # Under the allocator setting load_raw uses (agentprovision/bulk_memory.py), which speeds up the
        # plain insert too: the ratio compares the two paths, not two glibc settings.
        with t("raw_insert"), large_buffers_in_heap():
            insert_arrow(work / f"baseline_{number}.duckdb", sample)
        per_round["raw_insert"].append((t.wall["raw_insert"], t.cpu["raw_insert"]))
        for key, engine in stores.items():
            with t(key):
                reports = load_raw(engine, work / f"{key}_{number}.duckdb")  # type: ignore[arg-type]
            per_round[key].append((t.wall[key], t.cpu[key]))
            loaded = next(r.rows for r in reports if r.table == "events")
            if loaded != expected:
                raise SystemExit(f"load_raw ({key}) loaded {loaded} events, expected {expected}")
        for path in work.glob(f"*_{number}.duckdb"):
            path.unlink()
    for key, timings in per_round.items():
        t.wall[key] = statistics.median(wall for wall, _ in timings)
        t.cpu[key] = statistics.median(cpu for _, cpu in timings)
    return {key: [cpu for _, cpu in timings] for key, timings in per_round.items()}


def slice_batches(batches: list[pa.Table], rows: int) -> list[pa.Table]:
    out, left = [], rows
    for batch in batches:
        if left <= 0:
            break
        out.append(batch.slice(0, min(left, batch.num_rows)))
        left -= out[-1].num_rows
    return out


# --- dbt -------------------------------------------------------------------------------------------------


def dbt(args: list[str], warehouse: Path, work: Path) -> None:
    """Run the dbt CLI in its own process, as the pipeline does."""
    executable = Path(sys.executable).with_name("dbt")
    command = [
        str(executable),
        *args,
        "--project-dir",
        str(DBT_PROJECT),
        "--profiles-dir",
        str(DBT_PROJECT),
        "--target",
        "duckdb",
        "--target-path",
        str(work / "target"),
        "--log-path",
        str(work / "logs"),
        "--vars",
        f"{{as_of_date: '{START + timedelta(days=DAYS)}'}}",
    ]
    env = {**os.environ, "AGENTPROVISION_DUCKDB_PATH": str(warehouse), "AGENTPROVISION_WAREHOUSE_TARGET": "duckdb"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-25:])
        raise SystemExit(f"dbt {' '.join(args)} failed:\n{tail}")


# The same transformations as the dbt models in SELECTION, written by hand for DuckDB: the staging
# unpacking of usage events, fct_llm_calls, fct_cost_daily and rpt_chargeback_monthly (FOCUS columns).
HAND_SQL = """
CREATE SCHEMA IF NOT EXISTS hand;

CREATE OR REPLACE TABLE hand.fct_llm_calls AS
WITH calls AS (
    SELECT
        event_id, cast(seq AS bigint) AS seq,
        json_extract_string(payload, '$.call_id') AS call_id,
        json_extract_string(payload, '$.trace_id') AS trace_id,
        tenant_id,
        json_extract_string(payload, '$.department_id') AS department_id,
        agent_id, run_id,
        json_extract_string(payload, '$.model_requested') AS model_requested,
        json_extract_string(payload, '$.deployment_id') AS deployment_id,
        json_extract_string(payload, '$.model_name') AS model_name,
        json_extract_string(payload, '$.provider') AS provider,
        json_extract_string(payload, '$.region') AS region,
        coalesce(cast(json_extract_string(payload, '$.sandbox') AS boolean), false) AS is_sandbox,
        cast(json_extract_string(payload, '$.attempt') AS integer) AS attempt,
        coalesce(cast(json_extract_string(payload, '$.prompt_tokens') AS bigint), 0) AS prompt_tokens,
        coalesce(cast(json_extract_string(payload, '$.completion_tokens') AS bigint), 0) AS completion_tokens,
        coalesce(cast(json_extract_string(payload, '$.cached_tokens') AS bigint), 0) AS cached_tokens,
        coalesce(cast(json_extract_string(payload, '$.reasoning_tokens') AS bigint), 0) AS reasoning_tokens,
        coalesce(cast(json_extract_string(payload, '$.cost_usd') AS numeric(18, 8)), 0) AS cost_usd,
        cast(json_extract_string(payload, '$.latency_ms') AS double) AS latency_ms,
        json_extract_string(payload, '$.status') AS status,
        json_extract_string(payload, '$.error_class') AS error_class,
        coalesce(cast(json_extract_string(payload, '$.fallback_depth') AS integer), 0) AS fallback_depth,
        json_extract_string(payload, '$.guardrails.prompt.action') AS prompt_action,
        json_extract_string(payload, '$.guardrails.output.action') AS output_action,
        occurred_at, _loaded_at AS loaded_at
    FROM raw.events
    WHERE kind = 'usage' AND name = 'model_call'
)
SELECT
    event_id, call_id, trace_id, tenant_id, department_id, agent_id, run_id, occurred_at,
    cast(timezone('UTC', occurred_at) AS date) AS call_date,
    model_requested, deployment_id, model_name, provider, region, is_sandbox, attempt,
    prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens,
    prompt_tokens + completion_tokens AS total_tokens, cost_usd, latency_ms, status, error_class,
    fallback_depth, fallback_depth > 0 AS is_fallback,
    CASE
        WHEN 'blocked' IN (prompt_action, output_action) THEN 'blocked'
        WHEN 'masked' IN (prompt_action, output_action) THEN 'masked'
        WHEN 'allowed' IN (prompt_action, output_action) THEN 'allowed'
        ELSE 'clean'
    END AS guardrail_action,
    loaded_at
FROM calls;

CREATE OR REPLACE TABLE hand.fct_cost_daily AS
SELECT
    call_date AS cost_date, tenant_id, department_id, agent_id, model_name, provider, is_sandbox,
    count(DISTINCT CASE WHEN status <> 'skipped' THEN call_id END) AS calls,
    count(CASE WHEN status <> 'skipped' THEN 1 END) AS attempts,
    cast(sum(prompt_tokens) AS bigint) AS prompt_tokens,
    cast(sum(completion_tokens) AS bigint) AS completion_tokens,
    cast(sum(cost_usd) AS numeric(18, 8)) AS cost_usd
FROM hand.fct_llm_calls
GROUP BY ALL;

CREATE OR REPLACE TABLE hand.rpt_chargeback_monthly AS
WITH monthly AS (
    SELECT
        cast(date_trunc('month', cost_date) AS date) AS billing_month,
        tenant_id, department_id, agent_id, model_name, provider, is_sandbox,
        sum(calls) AS calls, sum(prompt_tokens + completion_tokens) AS total_tokens, sum(cost_usd) AS cost_usd
    FROM hand.fct_cost_daily
    GROUP BY ALL
)
SELECT
    m.tenant_id AS "BillingAccountId",
    t.display_name AS "BillingAccountName",
    timezone('UTC', cast(m.billing_month AS timestamp)) AS "BillingPeriodStart",
    timezone('UTC', cast(m.billing_month + INTERVAL 1 MONTH AS timestamp)) AS "BillingPeriodEnd",
    timezone('UTC', cast(m.billing_month AS timestamp)) AS "ChargePeriodStart",
    timezone('UTC', cast(m.billing_month + INTERVAL 1 MONTH AS timestamp)) AS "ChargePeriodEnd",
    'Usage' AS "ChargeCategory",
    'LLM usage of ' || coalesce(m.model_name, 'unknown model') || ' (' || coalesce(m.provider, 'unknown provider')
        || ')' || CASE WHEN m.is_sandbox THEN ' [sandbox]' ELSE '' END AS "ChargeDescription",
    cast(m.cost_usd AS numeric(18, 8)) AS "BilledCost",
    cast(m.cost_usd AS numeric(18, 8)) AS "EffectiveCost",
    cast(m.cost_usd AS numeric(18, 8)) AS "ListCost",
    cast(m.cost_usd AS numeric(18, 8)) AS "ContractedCost",
    'USD' AS "BillingCurrency",
    cast(m.total_tokens / 1000000.0 AS numeric(18, 6)) AS "PricingQuantity",
    '1M Tokens' AS "PricingUnit",
    cast(m.total_tokens AS numeric(18, 0)) AS "ConsumedQuantity",
    'Tokens' AS "ConsumedUnit",
    'AgentProvision' AS "ProviderName",
    coalesce(m.provider, 'unknown') AS "PublisherName",
    'AgentProvision' AS "InvoiceIssuerName",
    'AgentProvision LLM Gateway' AS "ServiceName",
    'AI and Machine Learning' AS "ServiceCategory",
    m.agent_id AS "ResourceId",
    a.name AS "ResourceName",
    CASE WHEN m.agent_id IS NULL THEN NULL ELSE 'AI Agent' END AS "ResourceType",
    t.region AS "RegionId",
    m.tenant_id || '/' || m.department_id AS "SubAccountId",
    d.name AS "SubAccountName",
    '{"cost_centre":' || coalesce('"' || d.cost_centre || '"', 'null') || ',"model":'
        || coalesce('"' || m.model_name || '"', 'null') || ',"sandbox":'
        || CASE WHEN m.is_sandbox THEN 'true' ELSE 'false' END || '}' AS "Tags",
    m.tenant_id, m.department_id, m.agent_id, m.model_name, m.provider, m.is_sandbox, m.billing_month,
    cast(m.calls AS bigint) AS calls
FROM monthly m
LEFT JOIN raw.tenants t ON m.tenant_id = t.tenant_id
LEFT JOIN raw.departments d ON m.tenant_id = d.tenant_id AND m.department_id = d.department_id
LEFT JOIN raw.agents a ON m.agent_id = a.agent_id;
"""


def hand_written(warehouse: Path) -> None:
    with duckdb.connect(str(warehouse)) as con:
        con.execute(HAND_SQL)


def same_results(warehouse: Path) -> str:
    """dbt's marts and the hand-written ones hold the same rows and the same cost per tenant."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        checks = []
        for table in ("fct_llm_calls", "fct_cost_daily", "rpt_chargeback_monthly"):
            dbt_rows = con.execute(f"SELECT count(*) FROM marts.{table}").fetchone()[0]
            hand_rows = con.execute(f"SELECT count(*) FROM hand.{table}").fetchone()[0]
            checks.append(f"{table} {dbt_rows} rows" + ("" if dbt_rows == hand_rows else f" (hand: {hand_rows})"))
        query = "SELECT tenant_id, sum(cost_usd) FROM {}.fct_cost_daily GROUP BY 1 ORDER BY 1"
        dbt_cost = con.execute(query.format("marts")).fetchall()
        hand_cost = con.execute(query.format("hand")).fetchall()
    if dbt_cost != hand_cost:
        raise SystemExit(f"hand-written SQL disagrees with dbt on cost per tenant: {dbt_cost} vs {hand_cost}")
    total = sum((Decimal(c) for _, c in dbt_cost), Decimal(0))
    return ", ".join(checks) + f"; cost per tenant identical (total {total:.2f} USD)"


# --- the run ---------------------------------------------------------------------------------------------


def run(
    total: int,
    ingest: int,
    work: Path,
    build_all: bool = True,
    postgres_admin: str | None = None,
    ingest_rounds: int = 3,
) -> dict[str, object]:
    figures: dict[str, object] = {"events": total, "ingest_events": ingest}
    t = Stopwatch()
    log(f"generating {total:,} events for the example config ({DAYS} days from {START})")
    engine, config = ops_store(work / "ops.db")
    loaded_at = datetime(2026, 10, 1, tzinfo=UTC)
    with t("generate"):
        batches = events(config, total, seed=1, start=START, first_seq=1, loaded_at=loaded_at)

    # Converting Python objects to Arrow imports pandas the first time (about a second): a one-off cost
    # of the process, paid here so that neither side of the ingestion comparison is charged with it.
    pa.array([1])

    # 1. ingestion, on the same `ingest` rows, put into each ops store once (not timed)
    sample = slice_batches(batches, ingest)
    stores: dict[str, object] = {"load_raw": engine}
    fill_ops_events(engine, sample)
    if postgres_admin:
        pg_engine, _ = postgres_ops_store(postgres_admin)
        fill_ops_events(pg_engine, sample)
        stores["load_raw_pg"] = pg_engine
    log(f"ingestion: plain DuckDB insert vs load_raw from {len(stores)} ops store(s), {ingest:,} events")
    figures["ingest_rounds"] = ingestion_rounds(t, ingest_rounds, sample, stores, work)
    for store in stores.values():
        store.dispose()  # type: ignore[attr-defined]
    del sample

    # 2. full build: snapshot tables from a config-only store, then every event as Arrow
    log("full build: raw tables")
    warehouse = work / "warehouse.duckdb"
    config_engine, _ = ops_store(work / "ops_config.db")
    load_raw(config_engine, warehouse)
    config_engine.dispose()
    with t("raw_insert_all"):
        insert_arrow(warehouse, batches)
    del batches
    log("dbt start-up (an empty run)")
    for attempt in ("dbt_startup_1", "dbt_startup_2"):  # the smaller of two is the fixed cost
        with t(attempt):
            dbt(["run", "--select", "tag:no-such-tag"], warehouse, work)
    for clock in (t.wall, t.cpu):
        clock["dbt_startup"] = min(clock.pop("dbt_startup_1"), clock.pop("dbt_startup_2"))
    log(f"dbt run --select {SELECTION} --full-refresh")
    with t("dbt_full"):
        dbt(["run", "--select", SELECTION, "--full-refresh"], warehouse, work)
    figures["full_models"] = model_times(work)
    log("hand-written SQL")
    with t("hand"):
        hand_written(warehouse)
    figures["agreement"] = same_results(warehouse)
    if build_all:
        log("dbt build (all models and tests)")
        with t("dbt_build_all"):
            dbt(["build", "--full-refresh"], warehouse, work)

    # 3. incremental: 100,000 later events loaded later
    log(f"incremental: {INCREMENT:,} new events")
    more = events(
        config,
        INCREMENT,
        seed=2,
        start=START + timedelta(days=DAYS - 3),
        first_seq=total + 1,
        loaded_at=loaded_at + timedelta(hours=1),
    )
    insert_arrow(warehouse, [table.cast(table.schema) for table in more])
    with t("dbt_incremental"):
        dbt(["run", "--select", SELECTION], warehouse, work)
    figures["incremental_models"] = model_times(work)
    figures["incremental_model_seconds"] = models_total(work)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        figures["calls_after_increment"] = con.execute("SELECT count(*) FROM marts.fct_llm_calls").fetchone()[0]
        expected = con.execute(
            "SELECT count(*) FROM raw.events WHERE kind = 'usage' AND name = 'model_call'"
        ).fetchone()[0]
        # The marts built incrementally by day must still add up to the calls, tenant by tenant.
        query = "SELECT tenant_id, sum(cost_usd) FROM marts.{} GROUP BY 1 ORDER BY 1"
        by_day, by_call = (con.execute(query.format(t)).fetchall() for t in ("fct_cost_daily", "fct_llm_calls"))
    if figures["calls_after_increment"] != expected:
        raise SystemExit(f"incremental fct_llm_calls has {figures['calls_after_increment']} rows, raw has {expected}")
    if by_day != by_call:
        raise SystemExit(f"incremental fct_cost_daily disagrees with fct_llm_calls: {by_day} vs {by_call}")
    figures["wall"], figures["cpu"] = t.wall, t.cpu
    return figures


def met(ok: bool) -> str:
    return "yes" if ok else "no"


def model_times(work: Path) -> str:
    """The slowest models of the last dbt invocation, from its run_results.json."""
    import json

    results = json.loads((work / "target" / "run_results.json").read_text())["results"]
    slowest = sorted(results, key=lambda r: r["execution_time"], reverse=True)[:4]
    return ", ".join(f"{r['unique_id'].rsplit('.', 1)[-1]} {r['execution_time']:.1f} s" for r in slowest)


def models_total(work: Path) -> float:
    """Wall seconds the last dbt invocation spent running its models (start-up and parsing excluded)."""
    import json

    results = json.loads((work / "target" / "run_results.json").read_text())["results"]
    return sum(r["execution_time"] for r in results)


def render(figures: dict[str, object]) -> str:
    wall: dict[str, float] = figures["wall"]  # type: ignore[assignment]
    cpu: dict[str, float] = figures["cpu"]  # type: ignore[assignment]
    total: int = figures["events"]  # type: ignore[assignment]
    ingest: int = figures["ingest_events"]  # type: ignore[assignment]
    ingest_ratio = cpu["raw_insert"] / cpu["load_raw"]
    if "load_raw_pg" in cpu:
        pg_ratio = cpu["raw_insert"] / cpu["load_raw_pg"]
    rounds: dict[str, list[float]] = figures["ingest_rounds"]  # type: ignore[assignment]

    def round_ratios(key: str) -> str:
        return ", ".join(f"{base / load:.2f}" for base, load in zip(rounds["raw_insert"], rounds[key], strict=True))

    budget = {clock: 1.25 * c["hand"] + c["dbt_startup"] for clock, c in (("wall", wall), ("cpu", cpu))}
    incremental_wall = wall["dbt_incremental"] - wall["dbt_startup"]

    def row(label: str, key: str, note: str = "", goal: str = "", ok: bool | None = None) -> str:
        return f"| {label} | {wall[key]:.2f} | {cpu[key]:.2f} | {note} | {goal} | {'' if ok is None else met(ok)} |"

    lines = [
        f"{total:,} synthetic events ({DAYS} days, example config tenants and agents), generated in "
        f"{wall['generate']:.1f} s; measured {datetime.now(UTC):%Y-%m-%d} on the shared 2-core machine.",
        "",
        "| measurement | wall s | CPU s | figure | goal | met |",
        "|---|---:|---:|---|---|---|",
        row(
            f"plain DuckDB insert of the Arrow table ({ingest:,} events)",
            "raw_insert",
            f"{ingest / cpu['raw_insert']:,.0f} events per CPU-s",
            "baseline",
        ),
        row(
            f"`load_raw` from the ops store (same {ingest:,} events)",
            "load_raw",
            f"{ingest / cpu['load_raw']:,.0f} events per CPU-s = {ingest_ratio:.3f}x the insert",
            ">= 0.5x",
            ingest_ratio >= 0.5,
        ),
        *(
            [
                row(
                    f"`load_raw` from a PostgreSQL ops store (same {ingest:,} events)",
                    "load_raw_pg",
                    f"{ingest / cpu['load_raw_pg']:,.0f} events per CPU-s = {pg_ratio:.3f}x the insert (the"
                    " server's own CPU for the read is not in it)",
                    ">= 0.5x",
                    pg_ratio >= 0.5,
                )
            ]
            if "load_raw_pg" in cpu
            else []
        ),
        row(f"plain DuckDB insert, all {total:,} events", "raw_insert_all", ""),
        row("dbt start-up (parse, connect, empty run; best of 2)", "dbt_startup"),
        row("hand-written SQL (same transformations)", "hand"),
        row(
            f"`dbt run --select {SELECTION} --full-refresh`",
            "dbt_full",
            f"{cpu['dbt_full'] / budget['cpu']:.2f}x of 1.25 x hand + start-up (CPU {budget['cpu']:.1f} s)",
            "<= 1.0x",
            cpu["dbt_full"] <= budget["cpu"],
        ),
        row("`dbt build --full-refresh` (every model and test)", "dbt_build_all", "", "information")
        if "dbt_build_all" in wall
        else "| `dbt build --full-refresh` (every model and test) | not run (--skip-build-all) | | | | |",
        row(
            f"incremental `dbt run --select {SELECTION}` after {INCREMENT:,} new events",
            "dbt_incremental",
            f"{incremental_wall:.2f} s wall ({cpu['dbt_incremental'] - cpu['dbt_startup']:.2f} CPU-s) without"
            f" start-up; the models themselves {figures['incremental_model_seconds']:.2f} s",
            "< 5 s wall without start-up",
            incremental_wall < 5,
        ),
        "",
        f"Ingestion rows are the median of {len(rounds['raw_insert'])} alternating rounds on the same events;"
        f" the ratio in each round: {round_ratios('load_raw')} from SQLite"
        + (f", {round_ratios('load_raw_pg')} from PostgreSQL." if "load_raw_pg" in rounds else "."),
        "",
        f"Hand-written and dbt results agree: {figures['agreement']}.",
        "",
        f"Slowest models, full run: {figures['full_models']}; incremental run: {figures['incremental_models']}.",
        f"Load average when the run finished: {os.getloadavg()[0]:.1f} on 2 cores shared with other work, so wall "
        "times are inflated; the ratios use CPU seconds (this process plus its dbt child processes).",
    ]
    return "\n".join(lines)


def write_doc(section: str) -> None:
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    block = f"{BEGIN}\n{section}\n{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = (
            text.rstrip()
            + "\n\n## Warehouse: ingestion and dbt builds\n\n"
            + "`python3 -m uv run python benchmarks/warehouse.py --events N` measures ingestion into the raw tables "
            + "against a plain DuckDB insert, the full dbt build of the cost marts against the same SQL written by "
            + "hand plus dbt's start-up, and an incremental build after 100,000 new events (see the script's "
            + "docstring for exactly what is timed).\n\n"
            + block
            + "\n"
        )
    DOC.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the full build (default 1,000,000)")
    parser.add_argument(
        "--ingest-events", type=int, default=None, help="events for the ingestion comparison (default: min(events, 1M))"
    )
    parser.add_argument("--no-write", action="store_true", help="print the figures, leave docs/benchmarks.md alone")
    parser.add_argument("--keep", action="store_true", help="keep the working directory (printed at the end)")
    parser.add_argument("--skip-build-all", action="store_true", help="leave out the informational full dbt build")
    parser.add_argument(
        "--ingest-rounds", type=int, default=3, help="alternating rounds of the ingestion comparison (default 3)"
    )
    parser.add_argument(
        "--postgres-ops",
        metavar="ADMIN_URL",
        help="also time ingestion from a PostgreSQL ops store (a database ap_bench_ops is created on that server)",
    )
    args = parser.parse_args()
    if args.events < INCREMENT:
        parser.error(f"--events must be at least {INCREMENT:,}")
    if args.ingest_rounds < 1:
        parser.error("--ingest-rounds must be at least 1")
    ingest = min(args.ingest_events or 1_000_000, args.events)
    work = Path(tempfile.mkdtemp(prefix="ap-warehouse-bench-"))
    try:
        figures = run(
            args.events,
            ingest,
            work,
            build_all=not args.skip_build_all,
            postgres_admin=args.postgres_ops,
            ingest_rounds=args.ingest_rounds,
        )
        section = render(figures)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(section)
    if not args.no_write:
        write_doc(section)
        print(f"\nwritten to {DOC.relative_to(REPO_ROOT)}")
    if args.keep:
        print(f"working directory: {work}")


if __name__ == "__main__":
    main()
