"""`agentprovision report ...` and `agentprovision invoices import`: files, types, permissions and audit.

The ops store holds the example config (its users and roles drive the permission checks). The
warehouse is a small hand-made `marts` schema with the chargeback mart's real column types, published
the way the pipeline publishes it, so these tests pin the export format independently of dbt.
"""

from __future__ import annotations

import csv
import subprocess
import sys
import textwrap
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from agentprovision import reports
from agentprovision.cli import app
from agentprovision.settings import load_settings
from agentprovision.store import models as m
from agentprovision.store.db import make_engine, session_factory, transaction
from agentprovision.warehouse import publish

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = REPO_ROOT / "config"
runner = CliRunner()

FOCUS_DDL = ", ".join(
    f'"{name}" '
    + (
        "TIMESTAMPTZ"
        if name in reports.PERIOD_COLUMNS
        else "DECIMAL(18,8)"
        if name in reports.COST_COLUMNS
        else "DECIMAL(18,6)"
        if name == "PricingQuantity"
        else "DECIMAL(18,0)"
        if name == "ConsumedQuantity"
        else "VARCHAR"
    )
    for name in reports.FOCUS_COLUMNS
)


def chargeback_row(tenant: str, month: str, department: str, agent: str, cost: str, description: str) -> str:
    start = f"TIMESTAMPTZ '{month}-01 00:00:00+00'"
    end = f"(TIMESTAMPTZ '{month}-01 00:00:00+00' + INTERVAL 1 MONTH)"
    values = {
        "BillingAccountId": f"'{tenant}'",
        "BillingAccountName": "'Zürich " + tenant.title() + "'",  # non-ASCII survives the CSV
        "BillingPeriodStart": start,
        "BillingPeriodEnd": end,
        "ChargePeriodStart": start,
        "ChargePeriodEnd": end,
        "ChargeCategory": "'Usage'",
        "ChargeDescription": f"'{description}'",
        "BilledCost": cost,
        "EffectiveCost": cost,
        "ListCost": cost,
        "ContractedCost": cost,
        "BillingCurrency": "'USD'",
        "PricingQuantity": "0.001500",
        "PricingUnit": "'1M Tokens'",
        "ConsumedQuantity": "1500",
        "ConsumedUnit": "'Tokens'",
        "ProviderName": "'AgentProvision'",
        "PublisherName": "'sandbox'",
        "InvoiceIssuerName": "'AgentProvision'",
        "ServiceName": "'AgentProvision LLM Gateway'",
        "ServiceCategory": "'AI and Machine Learning'",
        "ResourceId": f"'{agent}'",
        "ResourceName": f"'{agent}'",
        "ResourceType": "'AI Agent'",
        "RegionId": "'eu-west'",
        "SubAccountId": f"'{tenant}/{department}'",
        "SubAccountName": f"'{department}'",
        "Tags": """'{"cost_centre":"CC-1","sandbox":true}'""",
    }
    return (
        "(" + ", ".join(values[name] for name in reports.FOCUS_COLUMNS) + f", '{tenant}', '{department}', "
        f"DATE '{month}-01')"
    )


WAREHOUSE_SQL = f"""
CREATE SCHEMA marts;
CREATE TABLE marts.rpt_chargeback_monthly ({FOCUS_DDL}, tenant_id VARCHAR, department_id VARCHAR, billing_month DATE);
INSERT INTO marts.rpt_chargeback_monthly VALUES
    {chargeback_row("acme", "2026-10", "engineering", "acme-coder", "12.34567890", "LLM usage of gpt, large")},
    {chargeback_row("acme", "2026-10", "support", "acme-helper", "0.00000100", 'says "hi"')},
    {chargeback_row("acme", "2026-09", "support", "acme-helper", "99.00000000", "September")},
    {chargeback_row("globex", "2026-10", "analytics", "globex-analyst", "5.00000000", "LLM usage")};
CREATE TABLE marts.fct_cost_daily (cost_date DATE, tenant_id VARCHAR, model_name VARCHAR, provider VARCHAR,
    calls BIGINT, prompt_tokens BIGINT, completion_tokens BIGINT, cost_usd DECIMAL(18, 8));
INSERT INTO marts.fct_cost_daily VALUES
    (DATE '2026-10-02', 'acme', 'sandbox-large', 'sandbox', 10, 1000, 500, 2.5),
    (DATE '2026-10-03', 'acme', 'sandbox-small', 'sandbox', 4, 400, 100, 0.25),
    (DATE '2026-10-03', 'globex', 'globex-only-model', 'sandbox', 7, 700, 70, 9.75);
CREATE TABLE marts.fct_budget_status (month_start DATE, budget_level VARCHAR, scope_id VARCHAR, tenant_id VARCHAR,
    spend_mtd_usd DECIMAL(18, 8), soft_limit_usd DECIMAL(18, 8), hard_limit_usd DECIMAL(18, 8),
    forecast_month_end_usd DECIMAL(18, 8), projected_hard_cross_date DATE, status VARCHAR);
INSERT INTO marts.fct_budget_status VALUES
    (DATE '2026-10-01', 'tenant', 'acme', 'acme', 80, 100, 120, 130, DATE '2026-10-25', 'forecast_over'),
    (DATE '2026-10-01', 'tenant', 'globex', 'globex', 1, 100, 120, 3, NULL, 'ok');
"""


@pytest.fixture
def platform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Example config applied to a fresh ops store, and a published warehouse with the marts above."""
    monkeypatch.setenv("AGENTPROVISION_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("AGENTPROVISION_DATABASE_URL", f"sqlite:///{tmp_path / 'ops.db'}")
    monkeypatch.setenv("AGENTPROVISION_DUCKDB_PATH", str(tmp_path / "warehouse.duckdb"))
    monkeypatch.delenv("AGENTPROVISION_WAREHOUSE_TARGET", raising=False)
    monkeypatch.setenv("AGENTPROVISION_ACTOR", "ops@agentprovision.example")
    assert runner.invoke(app, ["apply", str(EXAMPLE_CONFIG)]).exit_code == 0
    settings = load_settings()
    with duckdb.connect(str(settings.duckdb_path)) as con:
        con.execute(WAREHOUSE_SQL)
    publish(settings.duckdb_path, settings.published_duckdb_path)
    return tmp_path


def audit_rows(action: str) -> list[tuple]:
    engine = make_engine(load_settings().database_url)
    with transaction(session_factory(engine)) as session:
        rows = session.execute(
            select(m.AuditRecord.actor, m.AuditRecord.outcome, m.AuditRecord.tenant_id, m.AuditRecord.details)
            .where(m.AuditRecord.action == action)
            .order_by(m.AuditRecord.seq)
        ).all()
    engine.dispose()
    return [tuple(row) for row in rows]


def export(out: Path, *args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["report", "chargeback", "--month", "2026-10", "--out", str(out), *args])


# --- chargeback ----------------------------------------------------------------------------------------------


def test_tenant_chargeback_csv_opens_cleanly(platform: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTPROVISION_ACTOR", "fiona@acme.example")  # acme's finance
    out = platform / "exports"
    result = export(out, "--tenant", "acme", "--format", "csv")
    assert result.exit_code == 0, result.output
    assert "2 rows, billed 12.35 USD" in result.output
    path = out / "chargeback_2026-10_acme.csv"
    assert sorted(p.name for p in out.iterdir()) == [path.name]  # csv only, no stray temp files

    raw = path.read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf")  # UTF-8 without a byte-order mark
    text = raw.decode("utf-8")
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert tuple(rows[0]) == reports.FOCUS_COLUMNS  # header row in FOCUS order, no index column
    records = [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]
    assert {r["BillingAccountId"] for r in records} == {"acme"}  # September and globex are out
    assert records[0]["BillingPeriodStart"] == "2026-10-01T00:00:00Z"
    assert records[0]["BillingPeriodEnd"] == "2026-11-01T00:00:00Z"
    assert records[0]["BillingAccountName"] == "Zürich Acme"
    costs = sorted(Decimal(r["BilledCost"]) for r in records)
    assert costs == [Decimal("0.000001"), Decimal("12.3456789")]
    assert "0.00000100" in text  # decimals written exactly, not as floats like 1e-06
    assert {r["ChargeDescription"] for r in records} == {"LLM usage of gpt, large", 'says "hi"'}


def test_parquet_keeps_focus_types(platform: Path) -> None:
    out = platform / "exports"
    result = export(out, "--format", "both")  # platform_admin, every tenant
    assert result.exit_code == 0, result.output
    assert (out / "chargeback_2026-10_all-tenants.csv").exists()
    table = pq.read_table(out / "chargeback_2026-10_all-tenants.parquet")
    schema = table.schema
    assert schema.names == list(reports.FOCUS_COLUMNS)
    assert schema.field("BilledCost").type == pa.decimal128(18, 8)
    assert schema.field("EffectiveCost").type == pa.decimal128(18, 8)
    assert schema.field("BillingPeriodStart").type == pa.timestamp("us", tz="UTC")
    assert schema.field("ChargePeriodEnd").type == pa.timestamp("us", tz="UTC")
    assert pa.types.is_decimal(schema.field("PricingQuantity").type)
    assert sorted(set(table.column("BillingAccountId").to_pylist())) == ["acme", "globex"]
    assert sum(table.column("BilledCost").to_pylist()) == Decimal("17.34567990")


def test_exports_are_permission_checked_and_audited(platform: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = platform / "exports"
    attempts = [
        ("fiona@acme.example", ["--tenant", "globex"], 1),  # another tenant's bill
        ("fiona@acme.example", [], 1),  # platform-wide needs a platform role
        ("li@acme.example", ["--tenant", "acme"], 1),  # analysts never see money
        ("audit@agentprovision.example", [], 1),  # auditors have no chargeback export
        ("fiona@acme.example", ["--tenant", "acme"], 0),
        ("ops@agentprovision.example", [], 0),
    ]
    for actor, args, code in attempts:
        monkeypatch.setenv("AGENTPROVISION_ACTOR", actor)
        result = export(out, *args)
        assert result.exit_code == code, (actor, args, result.output)
        if code:
            assert result.output.startswith("error: ") and "Traceback" not in result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "chargeback_2026-10_acme.csv",
        "chargeback_2026-10_acme.parquet",
        "chargeback_2026-10_all-tenants.csv",
        "chargeback_2026-10_all-tenants.parquet",
    ]
    records = audit_rows("data.exported")
    assert [(actor, outcome) for actor, outcome, _, _ in records] == [
        ("fiona@acme.example", "denied"),
        ("fiona@acme.example", "denied"),
        ("li@acme.example", "denied"),
        ("audit@agentprovision.example", "denied"),
        ("fiona@acme.example", "success"),
        ("ops@agentprovision.example", "success"),
    ]
    _, _, tenant, details = records[4]
    assert tenant == "acme" and details["rows"] == 2 and details["billed_cost_usd"] == "12.34567990"
    assert details["files"][0].endswith("chargeback_2026-10_acme.csv")


def test_unknown_actor_is_refused(platform: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTPROVISION_ACTOR", "mallory@evil.example")
    result = export(platform / "out", "--tenant", "acme")
    assert result.exit_code == 1 and "not an active user" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["report", "chargeback", "--month", "2026-13"], "is not YYYY-MM"),
        (["report", "chargeback", "--month", "October"], "is not YYYY-MM"),
        (["report", "chargeback", "--month", "2026-10", "--format", "xlsx"], "xlsx"),
        (["report", "chargeback", "--month", "2026-10", "--tenant", "umbrella"], "unknown tenant 'umbrella'"),
        (["report", "chargeback", "--month", "2026-10", "--tenant", " "], "--tenant must not be empty"),
    ],
)
def test_bad_report_input_is_explained(platform: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code != 0 and message in result.output
    assert "Traceback" not in result.output


def test_no_warehouse_says_what_to_run(platform: Path) -> None:
    load_settings().published_duckdb_path.unlink()
    result = export(platform / "out")
    assert result.exit_code == 1 and "agentprovision demo --once" in result.output
    assert not (platform / "out").exists() or not any((platform / "out").iterdir())


def test_usage_and_budget_tables(platform: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTPROVISION_ACTOR", "fiona@acme.example")
    usage = runner.invoke(app, ["report", "usage", "--tenant", "acme", "--month", "2026-10"])
    assert usage.exit_code == 0, usage.output
    assert "sandbox-large" in usage.output and "globex-only-model" not in usage.output
    budget = runner.invoke(app, ["report", "budget", "--tenant", "acme"])
    assert budget.exit_code == 0, budget.output
    assert "forecast_over" in budget.output and "globex" not in budget.output
    refused = runner.invoke(app, ["report", "usage"])  # platform-wide from a tenant role
    assert refused.exit_code == 1 and "platform" in refused.output


# --- invoice import ------------------------------------------------------------------------------------------

GOOD_INVOICE = """date,model,tenant,cost_usd,input_tokens,output_tokens,invoice_id
2026-10-01,gpt-4o,acme,12.50,100000,20000,INV-1
2026-10-01,gpt-4o,,3.25,5000,1000,INV-1
2026-10-02,gpt-4o-mini,globex,0.123456789,"1,000",10,INV-2
"""


def invoice_lines() -> list[tuple]:
    with duckdb.connect(str(load_settings().duckdb_path), read_only=True) as con:
        return con.execute(
            "SELECT invoice_id, usage_date, provider, model_name, tenant_id, cost_usd, input_tokens, output_tokens "
            "FROM raw.provider_invoice_lines ORDER BY invoice_id, usage_date, cost_usd"
        ).fetchall()


def test_invoice_import_writes_typed_rows_and_replaces_on_reimport(platform: Path) -> None:
    file = platform / "openai.csv"
    file.write_text(GOOD_INVOICE, encoding="utf-8-sig")  # spreadsheets save a BOM; it is accepted
    result = runner.invoke(app, ["invoices", "import", str(file), "--provider", "openai"])
    assert result.exit_code == 0, result.output
    assert "imported 3 lines" in result.output
    rows = invoice_lines()
    assert len(rows) == 3
    assert rows[0][1:] == (
        date(2026, 10, 1),
        "openai",
        "gpt-4o",
        None,
        Decimal("3.25000000"),
        5000,
        1000,
    )
    assert rows[2][4:] == ("globex", Decimal("0.12345679"), 1000, 10)  # rounded to DECIMAL(18, 8)

    # INV-1 corrected by the provider and imported again: replaced, not added; INV-2 untouched.
    file.write_text("date,model,cost_usd,input_tokens,output_tokens,invoice_id\n2026-10-01,gpt-4o,20,1,1,INV-1\n")
    assert runner.invoke(app, ["invoices", "import", str(file), "--provider", "openai"]).exit_code == 0
    rows = invoice_lines()
    assert [(r[0], r[5]) for r in rows] == [("INV-1", Decimal("20.00000000")), ("INV-2", Decimal("0.12345679"))]
    # The same invoice id from another provider is a different invoice.
    assert runner.invoke(app, ["invoices", "import", str(file), "--provider", "anthropic"]).exit_code == 0
    assert len(invoice_lines()) == 3

    records = audit_rows("invoices.imported")
    assert len(records) == 3 and all(outcome == "success" for _, outcome, _, _ in records)
    assert records[0][3]["invoice_ids"] == ["INV-1", "INV-2"] and records[0][3]["rows"] == 3


def test_bad_invoice_rows_are_all_listed_and_nothing_is_imported(platform: Path) -> None:
    file = platform / "bad.csv"
    file.write_text(
        "date,model,tenant,cost_usd,input_tokens,output_tokens,invoice_id\n"
        "2026-10-01,gpt-4o,acme,1.00,1,1,INV-9\n"
        "01/10/2026,gpt-4o,acme,1.00,1,1,INV-9\n"
        "2026-10-01,,acme,-2,1,1,INV-9\n"
        "2026-10-01,gpt-4o,umbrella,abc,1.5,-1,\n"
    )
    result = runner.invoke(app, ["invoices", "import", str(file), "--provider", "openai"])
    assert result.exit_code == 2, result.output
    output = result.output
    assert "nothing was imported" in output
    assert "line 3: date '01/10/2026' is not YYYY-MM-DD" in output
    assert "line 4: model is empty" in output and "line 4: cost_usd '-2' is negative" in output
    assert "line 5: tenant 'umbrella' is not a tenant" in output
    assert "line 5: cost_usd 'abc' is not a number" in output
    assert "line 5: input_tokens '1.5' is not a whole number" in output
    assert "line 5: output_tokens '-1' is negative" in output
    assert "line 5: invoice_id is empty" in output
    assert "line 2" not in output
    with duckdb.connect(str(load_settings().duckdb_path), read_only=True) as con:
        found = con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'provider_invoice_lines'"
        ).fetchone()[0]
        if found:
            assert con.execute("SELECT count(*) FROM raw.provider_invoice_lines").fetchone()[0] == 0
    assert audit_rows("invoices.imported") == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("date,model,cost_usd,invoice_id\n2026-10-01,m,1,I\n", "missing column(s) input_tokens, output_tokens"),
        ("", "the file is empty"),
        ("date,model,cost_usd,input_tokens,output_tokens,invoice_id\n", "no invoice lines"),
    ],
)
def test_malformed_invoice_files(platform: Path, content: str, message: str) -> None:
    file = platform / "x.csv"
    file.write_text(content)
    result = runner.invoke(app, ["invoices", "import", str(file), "--provider", "openai"])
    assert result.exit_code == 2 and message in result.output


def test_invoice_import_is_for_platform_finance_only(platform: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = platform / "openai.csv"
    file.write_text(GOOD_INVOICE)
    monkeypatch.setenv("AGENTPROVISION_ACTOR", "fiona@acme.example")
    result = runner.invoke(app, ["invoices", "import", str(file), "--provider", "openai"])
    assert result.exit_code == 1 and "error:" in result.output
    assert "may not invoice.import" in result.output and "is a platform action" in result.output
    assert [(a, o) for a, o, _, _ in audit_rows("invoices.imported")] == [("fiona@acme.example", "denied")]
    missing = runner.invoke(app, ["invoices", "import", str(platform / "nope.csv"), "--provider", "openai"])
    assert missing.exit_code == 1 and "cannot read" in missing.output


HOLD_LOCK = textwrap.dedent(
    """
    import sys, time, duckdb
    con = duckdb.connect(sys.argv[1])
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
    """
)


def test_invoice_import_waits_for_a_pipeline_run_then_explains(platform: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = platform / "openai.csv"
    file.write_text(GOOD_INVOICE)
    monkeypatch.setattr(reports, "WRITE_WAIT_SECONDS", 1.0)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(load_settings().duckdb_path), "20"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        result = runner.invoke(app, ["invoices", "import", str(file), "--provider", "openai"])
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == 1 and "in use by a pipeline run" in result.output
    assert audit_rows("invoices.imported") == []  # the audit record rolled back with the failed write


# --- end to end: events -> load_raw -> dbt -> chargeback export ----------------------------------------------


@pytest.fixture(scope="module")
def dbt_built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Example config plus synthetic October events, loaded and built by the real dbt project."""
    from dbt.cli.main import dbtRunner

    from agentprovision.apply import apply_config
    from agentprovision.config import load_config_dir
    from agentprovision.store.db import migrate
    from agentprovision.synthetic import write_to_store
    from agentprovision.warehouse import load_raw

    tmp = tmp_path_factory.mktemp("e2e")
    engine = make_engine(f"sqlite:///{tmp / 'ops.db'}")
    migrate(engine)
    config = load_config_dir(EXAMPLE_CONFIG).config
    with transaction(session_factory(engine)) as session:
        apply_config(session, config, actor="test", source=str(EXAMPLE_CONFIG))
    write_to_store(engine, config, days=20, events=1500, seed=7, start=date(2026, 10, 3))
    load_raw(engine, tmp / "warehouse.duckdb")
    engine.dispose()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AGENTPROVISION_DUCKDB_PATH", str(tmp / "warehouse.duckdb"))
        patch.delenv("AGENTPROVISION_WAREHOUSE_TARGET", raising=False)
        result = dbtRunner().invoke(
            ["run", "--select", "+rpt_chargeback_monthly", "--project-dir", str(REPO_ROOT / "dbt_project")]
            + ["--profiles-dir", str(REPO_ROOT / "dbt_project"), "--target", "duckdb"]
            + ["--target-path", str(tmp / "target"), "--log-path", str(tmp / "logs"), "--log-level", "warn"]
        )
    assert result.exception is None and result.success, result.exception or result.result
    publish(tmp / "warehouse.duckdb", tmp / "warehouse_published.duckdb")
    return tmp


def test_dbt_built_chargeback_matches_the_gateway_records(
    dbt_built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTPROVISION_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("AGENTPROVISION_DATABASE_URL", f"sqlite:///{dbt_built / 'ops.db'}")
    monkeypatch.setenv("AGENTPROVISION_DUCKDB_PATH", str(dbt_built / "warehouse.duckdb"))
    monkeypatch.delenv("AGENTPROVISION_WAREHOUSE_TARGET", raising=False)
    monkeypatch.setenv("AGENTPROVISION_ACTOR", "fiona@acme.example")
    result = export(tmp_path / "out", "--tenant", "acme")
    assert result.exit_code == 0, result.output

    table = pq.read_table(tmp_path / "out" / "chargeback_2026-10_acme.parquet")
    assert table.schema.names == list(reports.FOCUS_COLUMNS)
    assert table.schema.field("BilledCost").type == pa.decimal128(18, 8)
    assert table.schema.field("ChargePeriodStart").type == pa.timestamp("us", tz="UTC")
    assert set(table.column("BillingAccountId").to_pylist()) == {"acme"}
    assert set(table.column("BillingPeriodStart").to_pylist()) == {datetime(2026, 10, 1, tzinfo=UTC)}
    exported = sum(table.column("BilledCost").to_pylist(), Decimal(0))

    # The gateway's own records: every acme model call's cost in October, from the ops store.
    with transaction(session_factory(make_engine(f"sqlite:///{dbt_built / 'ops.db'}"))) as session:
        payloads = session.scalars(
            select(m.Event.payload).where(m.Event.tenant_id == "acme", m.Event.kind == "usage")
        ).all()
    recorded = sum((Decimal(p["cost_usd"]) for p in payloads if p.get("cost_usd") is not None), Decimal(0))
    assert exported > 0 and exported == recorded
