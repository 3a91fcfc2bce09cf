"""Jobs: selections of assets that run together."""

from __future__ import annotations

import dagster as dg

from orchestration.partitions import tenant_partitions

# Runs that write the DuckDB warehouse carry this tag; the run queue lets one run at a time hold it.
WAREHOUSE_WRITER_TAG = {"agentprovision/warehouse-writer": "duckdb"}

# The platform-wide pipeline (ingestion, every dbt model, publishing): everything that is neither
# per tenant nor a governance export, so new dbt models join it without a change here.
PIPELINE = dg.AssetSelection.all() - dg.AssetSelection.groups(
    "governance", "compliance", "agents", "connectors", "datasets"
)

full_pass_job = dg.define_asset_job(
    "full_pass",
    selection=PIPELINE,
    description="Ingest the ops store, build every dbt model with its tests, publish for the dashboards.",
    tags=WAREHOUSE_WRITER_TAG,
)

audit_heads_job = dg.define_asset_job(
    "audit_heads",
    selection=dg.AssetSelection.assets("audit_chain_heads"),
    description="Verify the audit chains and export their heads.",
)

agent_work_job = dg.define_asset_job(
    "run_agent_tasks",
    selection=dg.AssetSelection.assets("agent_work"),
    partitions_def=tenant_partitions,
    description="One tenant's queued agent tasks; launched by the dispatch sensor, or by hand to rerun a tenant.",
)

connector_sync_job = dg.define_asset_job(
    "sync_connectors",
    selection=dg.AssetSelection.assets("connector_syncs"),
    partitions_def=tenant_partitions,
    description="One tenant's integration syncs; launched by the connector schedule sensor.",
)

compliance_evidence_job = dg.define_asset_job(
    "build_evidence_packs",
    selection=dg.AssetSelection.assets("compliance_evidence"),
    partitions_def=tenant_partitions,
    description="One tenant's evidence pack for the month to date.",
)

retention_job = dg.define_asset_job(
    "apply_retention_policies",
    selection=dg.AssetSelection.assets("data_retention"),
    partitions_def=tenant_partitions,
    description="One tenant's retention policy, in the ops store and the warehouse.",
    tags=WAREHOUSE_WRITER_TAG,  # deletes and rewrites rows in the DuckDB warehouse
)

finetune_dataset_job = dg.define_asset_job(
    "export_finetune_datasets",
    selection=dg.AssetSelection.assets("finetune_dataset"),
    partitions_def=tenant_partitions,
    description="One tenant's fine-tuning dataset from its succeeded, approved runs.",
)
