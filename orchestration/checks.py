"""Asset checks beyond dbt's own tests: Great Expectations suites on the raw event table.

The suites run right after ingestion. They are blocking, so dbt waits for them: the suites open the
DuckDB file read-only, which a concurrently writing dbt process would refuse, and a raw table whose
schema is wrong should not feed the marts. Only schema failures stop the pipeline (severity ERROR);
bad values or stale events are warnings that show on the asset without holding back every mart.
"""


import dagster as dg
from sqlalchemy import select

from agentprovision.quality import run_raw_event_suites
from agentprovision.store.db import session_factory, transaction
from agentprovision.store.models import Tenant
from assets.ingestion import RAW_ASSET_KEYS
from orchestration.resources import OpsStoreResource, WarehouseResource

EVENTS = RAW_ASSET_KEYS["events"]
# GX suite name -> (check name, severity when it fails)
SUITES = {
    "raw.events.schema": ("gx_events_schema", dg.AssetCheckSeverity.ERROR),
    "raw.events.values": ("gx_events_values", dg.AssetCheckSeverity.WARN),
    "raw.events.freshness": ("gx_events_freshness", dg.AssetCheckSeverity.WARN),
}


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(check, asset=EVENTS, blocking=True, description=f"Great Expectations suite {suite}")
        for suite, (check, _) in SUITES.items()
    ],
    can_subset=True,
)
def raw_event_suites(context: dg.AssetCheckExecutionContext, ops_store: OpsStoreResource, warehouse: WarehouseResource):
    # Every tenant ever configured: events of a tenant removed from config are still valid history.
    with transaction(session_factory(ops_store.engine)) as session:
        tenants = set(session.scalars(select(Tenant.tenant_id)))
    results = {r.name: r for r in run_raw_event_suites(warehouse.path, tenants)}
    selected = {key.name for key in context.selected_asset_check_keys}
    for suite, (check, severity) in SUITES.items():
        if check not in selected:
            continue
        result = results.get(suite)
        if result is None:  # e.g. no raw.events table yet: nothing was ingested
            yield dg.AssetCheckResult(
                check_name=check, asset_key=EVENTS, passed=True, metadata={"skipped": "nothing to check yet"}
            )
            continue
        yield dg.AssetCheckResult(
            check_name=check,
            asset_key=EVENTS,
            passed=result.success,
            severity=severity,
            description=result.summary(),
            metadata={"rows": result.rows, "expectations": len(result.results), "failed": result.failed_count},
        )
