"""Jobs: selections of assets that run together."""

from __future__ import annotations

import dagster as dg

# Runs that write the DuckDB warehouse carry this tag; the run queue lets one run at a time hold it.
WAREHOUSE_WRITER_TAG = {"agentprovision/warehouse-writer": "duckdb"}

full_pass_job = dg.define_asset_job(
    "full_pass",
    selection=dg.AssetSelection.all() - dg.AssetSelection.groups("governance"),
    description="Ingest the ops store, build every dbt model with its tests, publish for the dashboards.",
    tags=WAREHOUSE_WRITER_TAG,
)

audit_heads_job = dg.define_asset_job(
    "audit_heads",
    selection=dg.AssetSelection.groups("governance"),
    description="Verify the audit chains and export their heads.",
)
