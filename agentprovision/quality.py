"""Great Expectations suites on the warehouse's raw tables: what dbt's tests cannot see because it is upstream of them.

Suites (each a `SuiteResult`):
- `raw.events.schema`, `raw.provider_invoice_lines.schema`: every expected column present with its
  type, nothing unexpected (compared with the layouts `agentprovision.warehouse` declares);
- `raw.events.values`: unique non-null event ids, known kinds, known tenants only, non-negative
  tokens and cost, usage events carry a cost, timestamps not before 2020 and not in the future
  beyond a small clock skew;
- `raw.events.freshness`: the newest event is at most `freshness_hours` old (when there are events);
- `raw.provider_invoice_lines.values`: non-negative cost and tokens, known tenants, sane dates, invoice ids.

By default the value suites check the newest load only (rows with the latest `_loaded_at`): every
load is checked once as it arrives, and a ten-million-row history is not re-read on every pass.
`batch="all"` checks everything. Rows are read with DuckDB, payload fields extracted in SQL, and
handed to GX as a pandas batch through an ephemeral context (no files, no analytics).

The orchestration layer wires `run_raw_event_suites` in as Dagster asset checks; nothing here imports Dagster.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import duckdb
import pandas as pd

from agentprovision.settings import Settings
from agentprovision.warehouse import INVOICE_COLUMNS, INVOICE_TABLE, RAW_SCHEMA, RAW_TABLES

EARLIEST = datetime(2020, 1, 1, tzinfo=UTC)
CLOCK_SKEW = timedelta(minutes=10)
FRESHNESS_HOURS = 24.0
EVENT_KINDS = ("usage", "tool", "policy", "run", "alert", "sync")
TOKEN_FIELDS = ("prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens")

# DuckDB spells some types differently in information_schema than in DDL.
_TYPE_NAMES = {"TIMESTAMPTZ": "TIMESTAMP WITH TIME ZONE", "INT": "INTEGER"}

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExpectationOutcome:
    expectation: str  # GX expectation type, e.g. expect_column_values_to_be_between
    column: str | None
    success: bool
    unexpected_count: int | None  # rows that broke it (None for table-level expectations)
    detail: str  # what was expected, and what was found when it failed


@dataclass
class SuiteResult:
    name: str
    success: bool
    rows: int  # rows checked
    results: list[ExpectationOutcome] = field(default_factory=list)

    @property
    def failed(self) -> list[ExpectationOutcome]:
        return [outcome for outcome in self.results if not outcome.success]

    @property
    def failed_count(self) -> int:
        return len(self.failed)

    def summary(self) -> str:
        if self.success:
            return f"{self.name}: {len(self.results)} expectations passed on {self.rows} rows"
        broken = "; ".join(
            f"{o.expectation}({o.column or 'table'})" + (f": {o.unexpected_count} rows" if o.unexpected_count else "")
            for o in self.failed
        )
        return (
            f"{self.name}: {self.failed_count} of {len(self.results)} expectations failed on {self.rows} rows: {broken}"
        )


# --- the suites ------------------------------------------------------------------------------------------


def _gx() -> tuple[Any, Any]:
    """An in-memory GX context with analytics and progress bars off, and the expectations module."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
        store_backend_defaults=InMemoryStoreBackendDefaults(),
    )
    return gx.get_context(mode="ephemeral", project_config=config), gx


def _validate(name: str, frame: pd.DataFrame, expectations: list[Any]) -> SuiteResult:
    context, gx = _gx()
    batch_definition = (
        context.data_sources.add_pandas(f"{name}-source")
        .add_dataframe_asset(f"{name}-frame")
        .add_batch_definition_whole_dataframe("whole")
    )
    suite = gx.ExpectationSuite(name=name)
    for expectation in expectations:
        suite.add_expectation(expectation)
    validation = batch_definition.get_batch(batch_parameters={"dataframe": frame}).validate(suite)
    outcomes = []
    for result in validation.results:
        config = result.expectation_config
        kwargs = {k: v for k, v in config.kwargs.items() if k not in ("batch_id",)}
        details = result.result or {}
        exception = (result.exception_info or {}).get("exception_message") if result.exception_info else None
        found = ""
        if not result.success:
            if exception:
                found = f"; error: {exception}"
            elif details.get("partial_unexpected_list"):
                found = f"; found e.g. {details['partial_unexpected_list'][:5]}"
            elif "observed_value" in details:
                found = f"; observed {details['observed_value']}"
        outcomes.append(
            ExpectationOutcome(
                expectation=config.type,
                column=kwargs.get("column"),
                success=bool(result.success),
                unexpected_count=details.get("unexpected_count"),
                detail=_describe(kwargs) + found,
            )
        )
    return SuiteResult(name=name, success=bool(validation.success), rows=len(frame), results=outcomes)


def _describe(kwargs: dict[str, Any]) -> str:
    shown = {k: v for k, v in kwargs.items() if k not in ("column", "result_format") and v is not None}
    text = ", ".join(f"{k}={v}" for k, v in shown.items())
    return text if len(text) < 300 else text[:297] + "..."


def _schema_suite(con: duckdb.DuckDBPyConnection, table: str, expected: dict[str, str]) -> SuiteResult:
    """Expected and actual column types side by side; a missing or retyped column is an unexpected row."""
    actual = dict(
        con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
            [RAW_SCHEMA, table],
        ).fetchall()
    )
    names = list(expected) + [name for name in actual if name not in expected]
    frame = pd.DataFrame(
        {
            "column_name": names,
            "expected_type": [_TYPE_NAMES.get(expected.get(n, ""), expected.get(n, "(not expected)")) for n in names],
            "actual_type": [actual.get(n, "(missing)") for n in names],
        }
    )
    from great_expectations import expectations as ge

    return _validate(
        f"{RAW_SCHEMA}.{table}.schema",
        frame,
        [
            ge.ExpectColumnValuesToBeInSet(column="column_name", value_set=sorted(actual), result_format="COMPLETE"),
            ge.ExpectColumnPairValuesToBeEqual(
                column_A="expected_type", column_B="actual_type", result_format="COMPLETE"
            ),
        ],
    )


def _events_frame(con: duckdb.DuckDBPyConnection, columns: set[str], batch: str) -> pd.DataFrame:
    """The events to check, with the payload's token and cost fields pulled out (as text, checked below)."""
    plain = [c for c in ("event_id", "tenant_id", "kind", "name", "occurred_at", "recorded_at") if c in columns]
    select = [*plain]
    if "payload" in columns:
        for name in (*TOKEN_FIELDS, "cost_usd"):
            select.append(f"json_extract_string(payload, '$.{name}') AS {name}_text")
    where = ""
    if batch == "latest" and "_loaded_at" in columns:
        where = f"WHERE _loaded_at = (SELECT max(_loaded_at) FROM {RAW_SCHEMA}.events)"
    frame = con.execute(f"SELECT {', '.join(select)} FROM {RAW_SCHEMA}.events {where}").df()
    # Parse the payload numbers here so a non-number shows as a failure, not as a silently dropped value.
    for name in (*TOKEN_FIELDS, "cost_usd"):
        text_column = f"{name}_text"
        if text_column in frame:
            frame[name] = pd.to_numeric(frame[text_column], errors="coerce")
            frame[f"{name}_is_number"] = frame[text_column].isna() | frame[name].notna()
    return frame


def _events_values_suite(frame: pd.DataFrame, tenants: set[str], now: datetime) -> SuiteResult:
    from great_expectations import expectations as ge
    from great_expectations.expectations.row_conditions import Column

    latest_allowed = now + CLOCK_SKEW
    expectations: list[Any] = [
        ge.ExpectColumnValuesToNotBeNull(column="event_id"),
        ge.ExpectColumnValuesToBeUnique(column="event_id"),
        ge.ExpectColumnValuesToBeInSet(column="kind", value_set=list(EVENT_KINDS)),
        # Platform-level events have no tenant (GX skips nulls); any tenant named must be a known one.
        ge.ExpectColumnValuesToBeInSet(column="tenant_id", value_set=sorted(tenants)),
        ge.ExpectColumnValuesToNotBeNull(column="occurred_at"),
        ge.ExpectColumnValuesToBeBetween(column="occurred_at", min_value=EARLIEST, max_value=latest_allowed),
        ge.ExpectColumnValuesToBeBetween(column="recorded_at", min_value=EARLIEST, max_value=latest_allowed),
    ]
    for name in (*TOKEN_FIELDS, "cost_usd"):
        if name in frame:
            expectations.append(ge.ExpectColumnValuesToBeBetween(column=name, min_value=0))
            expectations.append(ge.ExpectColumnValuesToBeInSet(column=f"{name}_is_number", value_set=[True]))
    if "cost_usd" in frame and "kind" in frame:
        # Every model call is billed: a usage event without a cost would vanish from chargeback.
        expectations.append(
            ge.ExpectColumnValuesToNotBeNull(
                column="cost_usd", row_condition=Column("kind") == "usage", condition_parser="pandas"
            )
        )
    return _validate(f"{RAW_SCHEMA}.events.values", frame, expectations)


def _freshness_suite(con: duckdb.DuckDBPyConnection, now: datetime, hours: float) -> SuiteResult:
    from great_expectations import expectations as ge

    latest = con.execute(f"SELECT max(occurred_at) FROM {RAW_SCHEMA}.events").fetchone()[0]
    if latest is None:
        # No events yet (a fresh install): nothing can be stale.
        return SuiteResult(name=f"{RAW_SCHEMA}.events.freshness", success=True, rows=0)
    frame = pd.DataFrame({"latest_occurred_at": pd.to_datetime([latest], utc=True)})
    return _validate(
        f"{RAW_SCHEMA}.events.freshness",
        frame,
        [
            ge.ExpectColumnMaxToBeBetween(
                column="latest_occurred_at", min_value=now - timedelta(hours=hours), max_value=now + CLOCK_SKEW
            )
        ],
    )


def _invoice_values_suite(con: duckdb.DuckDBPyConnection, tenants: set[str], now: datetime) -> SuiteResult:
    from great_expectations import expectations as ge

    frame = con.execute(f"SELECT * FROM {RAW_SCHEMA}.{INVOICE_TABLE}").df()
    if frame.empty:
        return SuiteResult(name=f"{RAW_SCHEMA}.{INVOICE_TABLE}.values", success=True, rows=0)
    frame["usage_date"] = pd.to_datetime(frame["usage_date"])
    expectations = [
        ge.ExpectColumnValuesToNotBeNull(column="invoice_id"),
        ge.ExpectColumnValuesToNotBeNull(column="provider"),
        ge.ExpectColumnValuesToNotBeNull(column="cost_usd"),
        ge.ExpectColumnValuesToBeBetween(column="cost_usd", min_value=0),
        ge.ExpectColumnValuesToBeBetween(column="input_tokens", min_value=0),
        ge.ExpectColumnValuesToBeBetween(column="output_tokens", min_value=0),
        ge.ExpectColumnValuesToBeInSet(column="tenant_id", value_set=sorted(tenants)),
        ge.ExpectColumnValuesToBeBetween(
            column="usage_date",
            min_value=pd.Timestamp(EARLIEST.date()),
            max_value=pd.Timestamp(now.date() + timedelta(days=1)),
        ),
    ]
    frame["cost_usd"] = frame["cost_usd"].astype(float)  # GX compares numbers, not Decimal objects
    return _validate(f"{RAW_SCHEMA}.{INVOICE_TABLE}.values", frame, expectations)


# --- entry point -----------------------------------------------------------------------------------------


def _events_layout() -> dict[str, str]:
    events = next(table for table in RAW_TABLES if table.name == "events")
    return {**events.columns, "_loaded_at": "TIMESTAMPTZ"}


def _duckdb_path(target: Path | str | Settings) -> Path:
    if isinstance(target, Settings):
        if target.warehouse_target != "duckdb":
            raise NotImplementedError("the raw-table suites read the DuckDB warehouse; PostgreSQL is not covered yet")
        return target.duckdb_path
    return Path(target)


def _connect(path: Path) -> duckdb.DuckDBPyConnection:
    """Read-only, unless this process already has the file open for writing (DuckDB then refuses a
    second configuration in one process); the suites only read either way."""
    try:
        return duckdb.connect(str(path), read_only=True)
    except duckdb.ConnectionException as exc:
        if "different configuration" not in str(exc):
            raise
        return duckdb.connect(str(path))


def run_raw_event_suites(
    target: Path | str | Settings,
    tenants: set[str],
    now: datetime | None = None,
    *,
    batch: Literal["latest", "all"] = "latest",
    freshness_hours: float = FRESHNESS_HOURS,
) -> list[SuiteResult]:
    """Run every raw-table suite against the DuckDB warehouse (a path, or the settings naming it).

    `tenants` are the tenant ids events may name; `now` anchors the future/freshness bounds (default: now).
    Opens the file read-only, so run it where the pipeline's writer is not holding the file (after ingestion).
    """
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    path = _duckdb_path(target)
    if not path.exists():
        raise FileNotFoundError(f"no warehouse at {path}; run a pipeline pass first")
    results = []
    with _connect(path) as con:
        con.execute("SET TimeZone = 'UTC'")
        tables = {
            name
            for (name,) in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = ?", [RAW_SCHEMA]
            ).fetchall()
        }
        results.append(_schema_suite(con, "events", _events_layout()))
        if "events" in tables:
            columns = {
                name
                for (name,) in con.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ?",
                    [RAW_SCHEMA, "events"],
                ).fetchall()
            }
            results.append(_events_values_suite(_events_frame(con, columns, batch), tenants, now))
            if "occurred_at" in columns:
                results.append(_freshness_suite(con, now, freshness_hours))
        results.append(_schema_suite(con, INVOICE_TABLE, dict(INVOICE_COLUMNS)))
        if INVOICE_TABLE in tables:
            results.append(_invoice_values_suite(con, tenants, now))
    for result in results:
        (logger.info if result.success else logger.warning)(result.summary())
    return results
