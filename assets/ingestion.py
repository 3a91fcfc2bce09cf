"""Ingestion: the ops store's config snapshots and event streams into the warehouse's raw schema."""

from __future__ import annotations

import dagster as dg

from agentprovision.warehouse import RAW_TABLES, load_raw
from orchestration.resources import OpsStoreResource, WarehouseResource

# Keys match the dbt source `ops`, so Dagster draws the lineage from raw tables to the models.
RAW_ASSET_KEYS = {table.name: dg.AssetKey(["ops", table.name]) for table in RAW_TABLES}


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
    can_subset=False,
)
def raw_ops_tables(ops_store: OpsStoreResource, warehouse: WarehouseResource):
    for report in load_raw(ops_store.engine, warehouse.path):
        metadata = {"rows_loaded": report.rows}
        if report.watermark is not None:
            # Open gaps: seqs below the watermark not committed yet (or never); re-read until they settle.
            metadata.update(watermark_seq=report.watermark, open_gaps=report.open_gaps, late_rows=report.late_rows)
        yield dg.MaterializeResult(asset_key=RAW_ASSET_KEYS[report.table], metadata=metadata)
