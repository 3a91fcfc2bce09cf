"""The one place every Dagster definition is assembled."""

from __future__ import annotations

import dagster as dg

from assets.agents import agent_work
from assets.connectors import connector_syncs
from assets.datasets import finetune_dataset
from assets.governance import audit_chain_heads, compliance_evidence, data_retention
from assets.ingestion import raw_ops_tables
from assets.warehouse import dbt_models, published_warehouse
from orchestration.jobs import (
    agent_work_job,
    audit_heads_job,
    compliance_evidence_job,
    connector_sync_job,
    finetune_dataset_job,
    full_pass_job,
    retention_job,
)
from orchestration.resources import build_resources
from orchestration.schedules import (
    audit_heads_daily,
    compliance_evidence_daily,
    finetune_datasets_weekly,
    full_pass_every_15_minutes,
    retention_daily,
)
from orchestration.sensors import (
    agent_schedules_sensor,
    alert_delivery_sensor,
    connector_schedules_sensor,
    dispatch_sensor,
    marts_alerting_sensor,
    run_failure_sensor,
    stale_reservations_sensor,
    tenant_partitions_sensor,
)

defs = dg.Definitions(
    assets=[
        raw_ops_tables,
        dbt_models,
        published_warehouse,
        agent_work,
        connector_syncs,
        audit_chain_heads,
        compliance_evidence,
        data_retention,
        finetune_dataset,
    ],
    jobs=[
        full_pass_job,
        agent_work_job,
        connector_sync_job,
        audit_heads_job,
        compliance_evidence_job,
        retention_job,
        finetune_dataset_job,
    ],
    schedules=[
        full_pass_every_15_minutes,
        audit_heads_daily,
        compliance_evidence_daily,
        retention_daily,
        finetune_datasets_weekly,
    ],
    sensors=[
        tenant_partitions_sensor,
        agent_schedules_sensor,
        dispatch_sensor,
        connector_schedules_sensor,
        marts_alerting_sensor,
        alert_delivery_sensor,
        stale_reservations_sensor,
        run_failure_sensor,
    ],
    resources=build_resources(),
)
