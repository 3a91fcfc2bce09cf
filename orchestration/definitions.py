"""The one place every Dagster definition is assembled."""

from __future__ import annotations

import dagster as dg

from assets.governance import audit_chain_heads
from assets.ingestion import raw_ops_tables
from assets.warehouse import dbt_models, published_warehouse
from orchestration.jobs import audit_heads_job, full_pass_job
from orchestration.resources import build_resources
from orchestration.schedules import audit_heads_daily, full_pass_every_15_minutes
from orchestration.sensors import agent_schedules_sensor, alert_delivery_sensor, tenant_partitions_sensor

defs = dg.Definitions(
    assets=[raw_ops_tables, dbt_models, published_warehouse, audit_chain_heads],
    jobs=[full_pass_job, audit_heads_job],
    schedules=[full_pass_every_15_minutes, audit_heads_daily],
    sensors=[tenant_partitions_sensor, agent_schedules_sensor, alert_delivery_sensor],
    resources=build_resources(),
)
