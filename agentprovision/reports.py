"""Finance reports over the marts, and the provider-invoice import the reconciliation marts compare against.

Plain functions, no CLI: `agentprovision.report_cli` adds permissions, audit records and messages.

- Chargeback: `rpt_chargeback_monthly` for one month, in the FinOps FOCUS column layout, written as
  CSV (UTF-8, header row, ISO 8601 UTC datetimes, no index column: opens cleanly in a spreadsheet)
  and/or Parquet (types kept: decimal costs, UTC timestamp periods), which FinOps tools load as is.
- Invoice import: a provider's usage export (CSV) checked row by row, then written to
  `raw.provider_invoice_lines`; re-importing an invoice id replaces its lines instead of adding them.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

import duckdb
import polars as pl
import pyarrow as pa

from agentprovision.marts import MartReader, Scope
from agentprovision.settings import Settings
from agentprovision.warehouse import INVOICE_COLUMNS, INVOICE_TABLE, RAW_SCHEMA

CHARGEBACK_MART = "rpt_chargeback_monthly"

# FOCUS 1.x columns the chargeback mart provides, in the order the export writes them.
FOCUS_COLUMNS: tuple[str, ...] = (
    "BillingAccountId",
    "BillingAccountName",
    "BillingPeriodStart",
    "BillingPeriodEnd",
    "ChargePeriodStart",
    "ChargePeriodEnd",
    "ChargeCategory",
    "ChargeDescription",
    "BilledCost",
    "EffectiveCost",
    "ListCost",
    "ContractedCost",
    "BillingCurrency",
    "PricingQuantity",
    "PricingUnit",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ProviderName",
    "PublisherName",
    "InvoiceIssuerName",
    "ServiceName",
    "ServiceCategory",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "RegionId",
    "SubAccountId",
    "SubAccountName",
    "Tags",
)
COST_COLUMNS = ("BilledCost", "EffectiveCost", "ListCost", "ContractedCost")
QUANTITY_COLUMNS = ("PricingQuantity", "ConsumedQuantity")
PERIOD_COLUMNS = ("BillingPeriodStart", "BillingPeriodEnd", "ChargePeriodStart", "ChargePeriodEnd")
COST_TYPE = pl.Decimal(18, 8)
QUANTITY_TYPE = pl.Decimal(18, 6)
FOCUS_DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # FOCUS: ISO 8601 in UTC

Format = Literal["csv", "parquet", "both"]


class ReportError(ValueError):
    """A report request that cannot be met (bad month, missing columns); the message is for the user."""


def parse_month(text: str) -> date:
    """'2026-10' -> date(2026, 10, 1)."""
    try:
        parsed = datetime.strptime(text.strip(), "%Y-%m")
    except ValueError:
        raise ReportError(f"month {text!r} is not YYYY-MM (for example 2026-10)") from None
    return parsed.date().replace(day=1)


# --- chargeback ------------------------------------------------------------------------------------


def chargeback(reader: MartReader, month: date, scope: Scope) -> pl.DataFrame:
    """One month of chargeback rows in scope, FOCUS columns only, in FOCUS order and types."""
    available = {name.lower(): name for name in reader.columns(CHARGEBACK_MART)}
    missing = [name for name in FOCUS_COLUMNS if name.lower() not in available]
    if missing:
        raise ReportError(f"{CHARGEBACK_MART} lacks FOCUS columns {', '.join(missing)}; rebuild the warehouse")
    frame = reader.read(
        CHARGEBACK_MART,
        scope,
        columns=[available[name.lower()] for name in FOCUS_COLUMNS],
        where={"billing_month": month},
        order_by=["BillingAccountId", "SubAccountId", "ResourceId", "ChargeDescription"],
    )
    # PostgreSQL folds unquoted names to lower case; the export always uses FOCUS's spelling.
    frame = frame.rename({available[name.lower()]: name for name in FOCUS_COLUMNS})
    return normalise_types(frame)


def normalise_types(frame: pl.DataFrame) -> pl.DataFrame:
    """Costs as decimals, periods as UTC timestamps: the same file whichever warehouse it came from."""
    casts = []
    for name in PERIOD_COLUMNS:
        dtype = frame.schema[name]
        column = pl.col(name)
        if isinstance(dtype, pl.Datetime) and dtype.time_zone:
            casts.append(column.dt.convert_time_zone("UTC"))
        elif isinstance(dtype, pl.Datetime):
            casts.append(column.dt.replace_time_zone("UTC"))
        else:
            casts.append(column.cast(pl.Datetime("us")).dt.replace_time_zone("UTC"))
    casts += [pl.col(name).cast(COST_TYPE) for name in COST_COLUMNS]
    casts += [pl.col(name).cast(QUANTITY_TYPE) for name in QUANTITY_COLUMNS]
    return frame.with_columns(casts)


def export_name(month: date, tenant_id: str | None) -> str:
    return f"chargeback_{month:%Y-%m}_{tenant_id or 'all-tenants'}"


def write_chargeback(frame: pl.DataFrame, out_dir: Path, stem: str, fmt: Format) -> list[Path]:
    """Write the export files, each atomically (a reader never sees half a file). Returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    if fmt in ("csv", "both"):
        target = out_dir / f"{stem}.csv"
        _atomic_write(target, lambda path: write_focus_csv(frame, path))
        written.append(target)
    if fmt in ("parquet", "both"):
        target = out_dir / f"{stem}.parquet"
        _atomic_write(target, lambda path: frame.write_parquet(path, compression="zstd", statistics=True))
        written.append(target)
    return written


def write_focus_csv(frame: pl.DataFrame, path: Path | io.BytesIO) -> None:
    """UTF-8 (no byte-order mark: FOCUS tools read the header verbatim), a header row, no index, RFC 4180 quoting."""
    frame.write_csv(
        path,
        include_header=True,
        datetime_format=FOCUS_DATETIME_FORMAT,
        date_format="%Y-%m-%d",
        quote_style="necessary",
        line_terminator="\r\n",
    )


def focus_csv_bytes(frame: pl.DataFrame) -> bytes:
    """The CSV export as bytes, for a download button."""
    buffer = io.BytesIO()
    write_focus_csv(frame, buffer)
    return buffer.getvalue()


def focus_parquet_bytes(frame: pl.DataFrame) -> bytes:
    """The Parquet export as bytes, for a download button."""
    buffer = io.BytesIO()
    frame.write_parquet(buffer, compression="zstd", statistics=True)
    return buffer.getvalue()


def _atomic_write(target: Path, write) -> None:  # type: ignore[no-untyped-def]
    staging = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        write(staging)
        os.replace(staging, target)
    finally:
        staging.unlink(missing_ok=True)


def total_cost(frame: pl.DataFrame) -> Decimal:
    if frame.height == 0:
        return Decimal("0")
    return Decimal(str(frame["BilledCost"].sum()))


# --- provider invoice import -----------------------------------------------------------------------

REQUIRED_INVOICE_COLUMNS = ("date", "model", "cost_usd", "input_tokens", "output_tokens", "invoice_id")
OPTIONAL_INVOICE_COLUMNS = ("tenant",)
MAX_REPORTED_PROBLEMS = 20
COST_QUANTUM = Decimal("0.00000001")  # DECIMAL(18, 8)
MAX_COST = Decimal("9999999999.99999999")


@dataclass(frozen=True)
class InvoiceLine:
    usage_date: date
    provider: str
    model_name: str
    tenant_id: str | None
    cost_usd: Decimal
    input_tokens: int
    output_tokens: int
    invoice_id: str


@dataclass
class InvoiceFile:
    lines: list[InvoiceLine]
    problems: list[str] = field(default_factory=list)
    sha256: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def invoice_ids(self) -> list[str]:
        return sorted({line.invoice_id for line in self.lines})

    @property
    def total_cost(self) -> Decimal:
        return sum((line.cost_usd for line in self.lines), Decimal("0"))


def parse_invoice_csv(data: bytes, provider: str, known_tenants: Iterable[str] | None = None) -> InvoiceFile:
    """Check a provider usage export; every bad row is reported (by line number), none is half-accepted."""
    parsed = InvoiceFile(lines=[], sha256=hashlib.sha256(data).hexdigest())
    provider = provider.strip()
    if not provider:
        parsed.problems.append("--provider must not be empty")
    try:
        text = data.decode("utf-8-sig")  # spreadsheets often save a byte-order mark
    except UnicodeDecodeError as exc:
        parsed.problems.append(f"the file is not UTF-8 text (byte {exc.start})")
        return parsed
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [name.strip().lower() for name in reader.fieldnames or []]
    if not header:
        parsed.problems.append("the file is empty: expected a header row")
        return parsed
    missing = [name for name in REQUIRED_INVOICE_COLUMNS if name not in header]
    if missing:
        parsed.problems.append(
            f"missing column(s) {', '.join(missing)}; the header must have "
            f"{', '.join(REQUIRED_INVOICE_COLUMNS)} (and optionally tenant)"
        )
        return parsed
    reader.fieldnames = header
    tenants = set(known_tenants) if known_tenants is not None else None
    for line_number, row in enumerate(reader, start=2):
        if None in row:
            parsed.problems.append(f"line {line_number}: more fields than the header has columns")
            continue
        values = {key: (value or "").strip() for key, value in row.items()}
        if not any(values.values()):
            continue  # blank line at the end of a spreadsheet export
        line, problems = _invoice_line(values, provider, tenants)
        parsed.problems += [f"line {line_number}: {problem}" for problem in problems]
        if line is not None:
            parsed.lines.append(line)
    if not parsed.lines and not parsed.problems:
        parsed.problems.append("the file has a header but no invoice lines")
    return parsed


def _invoice_line(
    values: dict[str, str], provider: str, tenants: set[str] | None
) -> tuple[InvoiceLine | None, list[str]]:
    problems = []
    usage_date = None
    try:
        usage_date = date.fromisoformat(values["date"])
    except ValueError:
        problems.append(f"date {values['date']!r} is not YYYY-MM-DD")
    if not values["model"]:
        problems.append("model is empty")
    if not values["invoice_id"]:
        problems.append("invoice_id is empty")
    tenant = values.get("tenant") or None
    if tenant is not None and tenants is not None and tenant not in tenants:
        problems.append(f"tenant {tenant!r} is not a tenant of this platform")
    cost = None
    try:
        cost = Decimal(values["cost_usd"].replace("$", "").replace(",", ""))
        if not cost.is_finite():
            raise InvalidOperation
        cost = cost.quantize(COST_QUANTUM, rounding=ROUND_HALF_EVEN)
        if cost < 0:
            problems.append(f"cost_usd {values['cost_usd']!r} is negative")
        elif cost > MAX_COST:
            problems.append(f"cost_usd {values['cost_usd']!r} is too large")
    except InvalidOperation:
        problems.append(f"cost_usd {values['cost_usd']!r} is not a number")
    tokens = {}
    for name in ("input_tokens", "output_tokens"):
        raw = values[name].replace(",", "")
        try:
            tokens[name] = int(raw) if raw else 0
            if tokens[name] < 0:
                problems.append(f"{name} {values[name]!r} is negative")
        except ValueError:
            problems.append(f"{name} {values[name]!r} is not a whole number")
    if problems:
        return None, problems
    assert usage_date is not None and cost is not None
    return (
        InvoiceLine(
            usage_date=usage_date,
            provider=provider,
            model_name=values["model"],
            tenant_id=tenant,
            cost_usd=cost,
            input_tokens=tokens["input_tokens"],
            output_tokens=tokens["output_tokens"],
            invoice_id=values["invoice_id"],
        ),
        [],
    )


def invoice_table(lines: list[InvoiceLine], imported_at: datetime) -> pa.Table:
    """The lines in raw.provider_invoice_lines' layout (imported_at is a UTC wall-clock TIMESTAMP)."""
    naive = imported_at.astimezone(UTC).replace(tzinfo=None)
    schema = pa.schema(
        [
            ("usage_date", pa.date32()),
            ("provider", pa.string()),
            ("model_name", pa.string()),
            ("tenant_id", pa.string()),
            ("cost_usd", pa.decimal128(18, 8)),
            ("input_tokens", pa.int64()),
            ("output_tokens", pa.int64()),
            ("invoice_id", pa.string()),
            ("imported_at", pa.timestamp("us")),
        ]
    )
    assert schema.names == list(INVOICE_COLUMNS), "keep in step with agentprovision.warehouse.INVOICE_COLUMNS"
    data: dict[str, list[Any]] = {
        "usage_date": [line.usage_date for line in lines],
        "provider": [line.provider for line in lines],
        "model_name": [line.model_name for line in lines],
        "tenant_id": [line.tenant_id for line in lines],
        "cost_usd": [line.cost_usd for line in lines],
        "input_tokens": [line.input_tokens for line in lines],
        "output_tokens": [line.output_tokens for line in lines],
        "invoice_id": [line.invoice_id for line in lines],
        "imported_at": [naive] * len(lines),
    }
    return pa.Table.from_pydict(data, schema=schema)


class WarehouseBusy(RuntimeError):
    """The DuckDB warehouse is held by a pipeline run for longer than we wait."""


WRITE_WAIT_SECONDS = 30.0


def import_invoice_lines(settings: Settings, invoice: InvoiceFile, now: datetime | None = None) -> int:
    """Replace the file's invoices (by provider and invoice id) in the warehouse's raw table; returns rows written."""
    table = invoice_table(invoice.lines, now or datetime.now(UTC))
    provider = invoice.lines[0].provider
    if settings.warehouse_target == "postgres":
        return _import_postgres(settings, table, provider, invoice.invoice_ids)
    return _import_duckdb(settings.duckdb_path, table, provider, invoice.invoice_ids)


def _invoice_ddl(types: dict[str, str] | None = None) -> str:
    columns = ", ".join(f"{name} {(types or {}).get(kind, kind)}" for name, kind in INVOICE_COLUMNS.items())
    return f"CREATE TABLE IF NOT EXISTS {RAW_SCHEMA}.{INVOICE_TABLE} ({columns})"


def _connect_writer(path: Path) -> duckdb.DuckDBPyConnection:
    """The writer's connection, waiting out a pipeline run that holds the file (DuckDB has one writing process)."""
    deadline = time.monotonic() + WRITE_WAIT_SECONDS
    while True:
        try:
            return duckdb.connect(str(path))
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() >= deadline:
                raise WarehouseBusy(
                    f"the warehouse {path} is in use by a pipeline run; try again when it has finished"
                ) from None
            time.sleep(0.5)


def _import_duckdb(path: Path, table: pa.Table, provider: str, invoice_ids: list[str]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    con = _connect_writer(path)
    try:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {RAW_SCHEMA}")
        con.execute(_invoice_ddl())
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(
                f"DELETE FROM {RAW_SCHEMA}.{INVOICE_TABLE} "
                "WHERE provider = $provider AND list_contains($ids, invoice_id)",
                {"provider": provider, "ids": invoice_ids},
            )
            con.register("invoice_batch", table)
            con.execute(f"INSERT INTO {RAW_SCHEMA}.{INVOICE_TABLE} SELECT * FROM invoice_batch")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    finally:
        con.close()
    return table.num_rows


def _import_postgres(settings: Settings, table: pa.Table, provider: str, invoice_ids: list[str]) -> int:
    import psycopg

    from agentprovision.warehouse import ensure_postgres_database, ensure_postgres_schema

    url = settings.warehouse_url.replace("postgresql+psycopg://", "postgresql://", 1)
    ensure_postgres_database(url)
    with psycopg.connect(url) as conn:  # one transaction: commits on success, rolls back on error
        ensure_postgres_schema(conn)
        conn.execute(
            f"DELETE FROM {RAW_SCHEMA}.{INVOICE_TABLE} WHERE provider = %s AND invoice_id = ANY(%s)",
            [provider, invoice_ids],
        )
        columns = ", ".join(INVOICE_COLUMNS)
        with conn.cursor().copy(f"COPY {RAW_SCHEMA}.{INVOICE_TABLE} ({columns}) FROM STDIN") as copy:
            for row in table.to_pylist():
                copy.write_row([row[name] for name in INVOICE_COLUMNS])
    return table.num_rows
