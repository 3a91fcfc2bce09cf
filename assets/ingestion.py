"""Ingestion: the ops store's config snapshots and event streams into the warehouse's raw schema.

The Great Expectations suites on the raw event table run in the same step, right after the load
commits, and report as asset checks on `ops/events`. Running them here rather than in a step of
their own keeps them off the DuckDB file while dbt writes it (DuckDB refuses a reader in another
process while a writer holds the file), and dbt, downstream of this step, starts only after them.
"""

from __future__ import annotations

import dagster as dg
from sqlalchemy import select

from agentprovision.quality import run_raw_event_suites
from agentprovision.store.db import session_factory, transaction
from agentprovision.store.models import Tenant
from agentprovision.warehouse import RAW_TABLES, load_raw
from orchestration.resources import OpsStoreResource, WarehouseResource

# Keys match the dbt source `ops`, so Dagster draws the lineage from raw tables to the models.
RAW_ASSET_KEYS = {table.name: dg.AssetKey(["ops", table.name]) for table in RAW_TABLES}
EVENTS = RAW_ASSET_KEYS["events"]

# GX suite -> (check name, severity when it fails). A wrong schema stops the marts (blocking, ERROR);
# bad values or stale events are warnings shown on the asset without holding back every mart.
GX_SUITES = {
    "raw.events.schema": ("gx_events_schema", dg.AssetCheckSeverity.ERROR),
    "raw.events.values": ("gx_events_values", dg.AssetCheckSeverity.WARN),
    "raw.events.freshness": ("gx_events_freshness", dg.AssetCheckSeverity.WARN),
}


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            key,
            group_name="ingestion",
            kinds={"duckdb", "python"},
            description=f"raw.{name}: copied from the ops store"
            + (
                " past a seq watermark (re-reading seqs that commit late), exactly once."
                if table.streamed
                else ", replaced whole."
            ),
        )
        for (name, key), table in zip(RAW_ASSET_KEYS.items(), RAW_TABLES, strict=True)
    ],
    check_specs=[
        dg.AssetCheckSpec(check, asset=EVENTS, blocking=True, description=f"Great Expectations suite {suite}")
        for suite, (check, _) in GX_SUITES.items()
    ],
    can_subset=False,
)
def raw_ops_tables(ops_store: OpsStoreResource, warehouse: WarehouseResource):
    for report in load_raw(ops_store.engine, warehouse.path):
        metadata = {"rows_loaded": report.rows}
        if report.watermark is not None:
            # Open gaps: seqs below the watermark not committed yet (or never); re-read until they settle.
            metadata.update(watermark_seq=report.watermark, open_gaps=report.open_gaps, late_rows=report.late_rows)
        yield dg.MaterializeResult(asset_key=RAW_ASSET_KEYS[report.table], metadata=metadata)
    yield from raw_event_checks(ops_store, warehouse)


def raw_event_checks(ops_store: OpsStoreResource, warehouse: WarehouseResource):
    # Every tenant ever configured: events of a tenant since removed from config are still valid history.
    with transaction(session_factory(ops_store.engine)) as session:
        tenants = set(session.scalars(select(Tenant.tenant_id)))
    results = {r.name: r for r in run_raw_event_suites(warehouse.path, tenants)}
    for suite, (check, severity) in GX_SUITES.items():
        result = results.get(suite)
        if result is None:  # e.g. no events table yet
            yield dg.AssetCheckResult(check_name=check, asset_key=EVENTS, passed=True, metadata={"skipped": True})
            continue
        yield dg.AssetCheckResult(
            check_name=check,
            asset_key=EVENTS,
            passed=result.success,
            severity=severity,
            description=result.summary(),
            metadata={"rows": result.rows, "expectations": len(result.results), "failed": result.failed_count},
        )
