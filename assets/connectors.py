"""Connector syncs: one tenant partition syncs that tenant's integrations through the sync engine."""

import dagster as dg
from pydantic import Field

from agentprovision.settings import load_settings
from connectors.errors import ConnectorError
from connectors.sync import SyncOptions, active_integrations, run_sync
from orchestration.partitions import tenant_partitions
from orchestration.resources import OpsStoreResource


class ConnectorSyncConfig(dg.Config):
    integration_ids: list[str] | None = Field(
        default=None, description="Integrations to sync (the schedule sensor sets one); empty: all of the tenant's."
    )


@dg.asset(
    partitions_def=tenant_partitions,
    group_name="connectors",
    kinds={"python"},
    pool="connector_sync",
    description="Incremental sync of the tenant's integrations; new records fire event triggers that queue tasks.",
)
def connector_syncs(
    context: dg.AssetExecutionContext, config: ConnectorSyncConfig, ops_store: OpsStoreResource
) -> dg.MaterializeResult:
    tenant_id = context.partition_key
    engine = ops_store.engine
    wanted = config.integration_ids or [integration for _, integration, _ in active_integrations(engine, tenant_id)]
    # Relative paths in integration settings (files, docs) resolve against the config directory.
    options = SyncOptions(base_dir=load_settings().config_dir)
    synced, failed = [], []
    for integration_id in wanted:
        # The sync engine retries HTTP calls itself and resumes from its last committed batch, so a
        # failure here is reported (as a sync_failed alert, by the engine) rather than retried blindly.
        try:
            result = run_sync(engine, tenant_id, integration_id, options=options)
        except ConnectorError as exc:
            failed.append(f"{integration_id}: {exc}")
            continue
        synced.append(result)
        context.log.info(result.summary())
    metadata = {
        "integrations": len(wanted),
        "synced": len(synced),
        "records_new": sum(r.inserted for r in synced),
        "records_changed": sum(r.updated for r in synced),
        "tasks_queued": sum(r.tasks_created for r in synced),
    }
    if failed:
        raise dg.Failure(
            f"{len(failed)} of {len(wanted)} sync(s) failed for {tenant_id}",
            metadata={**metadata, "failures": "\n".join(failed)},
        )
    return dg.MaterializeResult(metadata=metadata)
