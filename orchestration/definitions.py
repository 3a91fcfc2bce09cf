"""The one place every Dagster definition is assembled."""

from __future__ import annotations

import dagster as dg

from assets.ingestion import raw_ops_tables
from assets.warehouse import dbt_models, published_warehouse
from orchestration.jobs import full_pass_job
from orchestration.resources import build_resources
from orchestration.schedules import full_pass_every_15_minutes

defs = dg.Definitions(
    assets=[raw_ops_tables, dbt_models, published_warehouse],
    jobs=[full_pass_job],
    schedules=[full_pass_every_15_minutes],
    resources=build_resources(),
)
