"""`agentprovision report ...` and `agentprovision invoices ...`: finance's commands over the warehouse.

Every command names who is acting (AGENTPROVISION_ACTOR), checks the permission matrix for the
tenant asked about (or the whole platform), and writes an audit record of what left the platform
or came into it; a refusal is audited too. Expected failures end in one line on stderr and exit 1
(exit 2 for an invalid invoice file), never a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from agentprovision import reports
from agentprovision.marts import MartQueryError, MartReader, Scope, SqlRefused, WarehouseUnavailable
from agentprovision.settings import Settings, current_actor, load_settings
from agentprovision.store.audit import append_audit
from agentprovision.store.db import open_store, session_factory, transaction
from agentprovision.store.models import Tenant
from governance.cli import principal_for
from governance.permissions import Action, PermissionDenied, require

report_app = typer.Typer(help="Reports from the warehouse: chargeback (FOCUS), budgets, usage.", no_args_is_help=True)
invoices_app = typer.Typer(help="Provider invoices: import usage exports for reconciliation.", no_args_is_help=True)

EXIT_FAILED = 1
EXIT_INVALID = 2


class ExportFormat(StrEnum):
    csv = "csv"
    parquet = "parquet"
    both = "both"


class Failure(Exception):
    """An expected failure: its message is shown as is."""

    def __init__(self, message: str, code: int = EXIT_FAILED):
        super().__init__(message)
        self.code = code


@contextmanager
def _cli_errors() -> Iterator[None]:
    """Turn every expected failure into one line on stderr and an exit code."""
    try:
        yield
    except Failure as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.code) from None
    except (
        PermissionDenied,
        WarehouseUnavailable,
        MartQueryError,
        SqlRefused,
        reports.ReportError,
        reports.WarehouseBusy,
    ) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    except SQLAlchemyError as exc:
        typer.echo(
            f"error: the ops store cannot be used ({type(exc).__name__}); check AGENTPROVISION_DATABASE_URL", err=True
        )
        raise typer.Exit(EXIT_FAILED) from None
    except OSError as exc:
        typer.echo(f"error: {exc.strerror or exc} ({exc.filename or ''})", err=True)
        raise typer.Exit(EXIT_FAILED) from None


def _settings() -> Settings:
    try:
        return load_settings()
    except ValueError as exc:
        raise Failure(str(exc)) from None


def _authorized(session: Session, actor: str, action: Action, tenant_id: str | None) -> None:
    """The actor may do `action` on the tenant (None: the platform), and the tenant exists."""
    if tenant_id is not None and not tenant_id.strip():
        raise Failure("--tenant must not be empty; leave it out for every tenant")
    require(principal_for(session, actor), action, tenant_id)
    # Checked after the permission, so a refused caller learns nothing about which tenants exist.
    if tenant_id is not None and session.get(Tenant, tenant_id) is None:
        raise Failure(f"unknown tenant {tenant_id!r}")


def _audit_refusal(factory, actor: str, action: str, target_type: str, target_id: str, reason: str) -> None:  # type: ignore[no-untyped-def]
    # The transaction that was refused rolled back; the refusal is recorded in its own.
    with transaction(factory) as session:
        append_audit(
            session,
            actor=actor,
            action=action,
            target_type=target_type,
            target_id=target_id,
            source="cli",
            outcome="denied",
            details={"reason": reason},
        )


# --- report chargeback ------------------------------------------------------------------------------


@report_app.command("chargeback")
def chargeback(
    month: Annotated[str, typer.Option(help="Billing month, YYYY-MM (e.g. 2026-10).")],
    tenant: Annotated[
        str | None, typer.Option(help="Tenant id; leave out for every tenant (platform-wide roles only).")
    ] = None,
    format: Annotated[ExportFormat, typer.Option("--format", help="csv, parquet or both.")] = ExportFormat.both,  # noqa: A002
    out: Annotated[Path, typer.Option(help="Directory to write the files to.")] = Path("."),
) -> None:
    """Export a month's chargeback in the FinOps FOCUS layout (CSV for spreadsheets, Parquet for FinOps tools)."""
    with _cli_errors():
        settings = _settings()
        period = reports.parse_month(month)
        actor = current_actor()
        factory = session_factory(open_store(*settings.store_urls))
        target_id = f"{tenant or 'platform'}/{period:%Y-%m}"
        written: list[Path] = []
        try:
            with transaction(factory) as session:
                _authorized(session, actor, Action.CHARGEBACK_EXPORT, tenant)
                scope = Scope.tenant(tenant) if tenant else Scope.platform()
                frame = reports.chargeback(MartReader(settings), period, scope)
                written = reports.write_chargeback(
                    frame,
                    out,
                    reports.export_name(period, tenant),
                    format.value,  # type: ignore[arg-type]
                )
                append_audit(
                    session,
                    actor=actor,
                    action="data.exported",
                    target_type="chargeback_report",
                    target_id=target_id,
                    tenant_id=tenant,
                    source="cli",
                    details={
                        "month": f"{period:%Y-%m}",
                        "rows": frame.height,
                        "billed_cost_usd": str(reports.total_cost(frame)),
                        "files": [str(path.resolve()) for path in written],
                        "format": format.value,
                    },
                )
        except PermissionDenied as exc:
            _audit_refusal(factory, actor, "data.exported", "chargeback_report", target_id, str(exc))
            raise
        except BaseException:
            for path in written:  # not audited, so not exported: take the files back
                path.unlink(missing_ok=True)
            raise
    scope_text = f"tenant {tenant}" if tenant else "all tenants"
    typer.echo(
        f"chargeback {period:%Y-%m} for {scope_text}: {frame.height} rows, billed {reports.total_cost(frame):.2f} USD"
    )
    if frame.height == 0:
        typer.echo("  (no usage in that month: has the pipeline run since the calls were made?)")
    for path in written:
        typer.echo(f"  {path}")


# --- report budget / usage: small tables on the terminal ----------------------------------------------


def _read_for(action: Action, tenant: str | None, mart: str, **read_args) -> pl.DataFrame:  # type: ignore[no-untyped-def]
    settings = _settings()
    actor = current_actor()
    with transaction(session_factory(open_store(*settings.store_urls))) as session:
        _authorized(session, actor, action, tenant)
    scope = Scope.tenant(tenant) if tenant else Scope.platform()
    return MartReader(settings).read(mart, scope, **read_args)


def _print_table(frame: pl.DataFrame, empty: str) -> None:
    if frame.height == 0:
        typer.echo(empty)
        return
    with pl.Config(tbl_rows=200, tbl_cols=20, tbl_hide_dataframe_shape=True, fmt_str_lengths=40, tbl_width_chars=160):
        typer.echo(str(frame))


@report_app.command("budget")
def budget(
    tenant: Annotated[str | None, typer.Option(help="Tenant id; leave out for every tenant.")] = None,
) -> None:
    """Month-to-date spend against budgets, with the forecast to month end."""
    with _cli_errors():
        frame = _read_for(
            Action.COST_VIEW,
            tenant,
            "fct_budget_status",
            columns=[
                "budget_level",
                "scope_id",
                "spend_mtd_usd",
                "soft_limit_usd",
                "hard_limit_usd",
                "forecast_month_end_usd",
                "projected_hard_cross_date",
                "status",
            ],
            order_by=["budget_level", "scope_id"],
        )
        _print_table(frame, "no budgets in scope")


@report_app.command("usage")
def usage(
    tenant: Annotated[str | None, typer.Option(help="Tenant id; leave out for every tenant.")] = None,
    month: Annotated[str | None, typer.Option(help="YYYY-MM; default: the current month.")] = None,
) -> None:
    """Calls, tokens and cost per model for a month."""
    with _cli_errors():
        start = reports.parse_month(month) if month else date.today().replace(day=1)
        end = date(start.year + start.month // 12, start.month % 12 + 1, 1)
        settings = _settings()
        actor = current_actor()
        with transaction(session_factory(open_store(*settings.store_urls))) as session:
            _authorized(session, actor, Action.COST_VIEW, tenant)
        frame = MartReader(settings).select(
            "SELECT model_name, provider, sum(calls) AS calls, sum(prompt_tokens) AS prompt_tokens, "
            "sum(completion_tokens) AS completion_tokens, sum(cost_usd) AS cost_usd "
            "FROM fct_cost_daily WHERE cost_date >= $start AND cost_date < $end "
            "GROUP BY model_name, provider ORDER BY cost_usd DESC, model_name",
            Scope.tenant(tenant) if tenant else Scope.platform(),
            {"start": start, "end": end},
        )
        _print_table(frame, f"no usage in {start:%Y-%m}")


# --- invoices import -----------------------------------------------------------------------------------


@invoices_app.command("import")
def import_invoices(
    file: Annotated[Path, typer.Argument(help="The provider's usage export (CSV).")],
    provider: Annotated[str, typer.Option(help="Provider name as the gateway records it (e.g. openai).")],
) -> None:
    """Load a provider usage export for reconciliation; importing an invoice again replaces it.

    Columns: date, model, tenant (optional), cost_usd, input_tokens, output_tokens, invoice_id.
    """
    with _cli_errors():
        settings = _settings()
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise Failure(f"cannot read {file}: {exc.strerror or exc}") from None
        actor = current_actor()
        factory = session_factory(open_store(*settings.store_urls))
        target_id = f"{provider}/{file.name}"
        try:
            with transaction(factory) as session:
                # A provider invoice is billed to the platform: platform_admin or platform-level finance.
                _authorized(session, actor, Action.INVOICE_IMPORT, None)
                tenants = set(session.scalars(select(Tenant.tenant_id)))
                invoice = reports.parse_invoice_csv(data, provider, tenants)
                if not invoice.ok:
                    shown = invoice.problems[: reports.MAX_REPORTED_PROBLEMS]
                    more = len(invoice.problems) - len(shown)
                    lines = "\n".join(f"  {problem}" for problem in shown)
                    suffix = f"\n  ... and {more} more" if more else ""
                    raise Failure(
                        f"{file}: {len(invoice.problems)} problem(s); nothing was imported\n{lines}{suffix}",
                        EXIT_INVALID,
                    )
                # Audit and data together: if the warehouse write fails the audit record rolls back with it.
                append_audit(
                    session,
                    actor=actor,
                    action="invoices.imported",
                    target_type="provider_invoice",
                    target_id=target_id,
                    source="cli",
                    details={
                        "provider": provider,
                        "file": file.name,
                        "sha256": invoice.sha256,
                        "rows": len(invoice.lines),
                        "invoice_ids": invoice.invoice_ids,
                        "cost_usd": str(invoice.total_cost),
                    },
                )
                rows = reports.import_invoice_lines(settings, invoice)
        except PermissionDenied as exc:
            _audit_refusal(factory, actor, "invoices.imported", "provider_invoice", target_id, str(exc))
            raise
    ids = ", ".join(invoice.invoice_ids)
    typer.echo(f"imported {rows} lines of {provider} invoice(s) {ids}: {invoice.total_cost:.2f} USD")
    typer.echo("  the reconciliation marts compare them with the gateway's records on the next pipeline run")
