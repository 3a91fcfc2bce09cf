"""Schedules."""

from __future__ import annotations

import dagster as dg

from orchestration.jobs import audit_heads_job, full_pass_job

full_pass_every_15_minutes = dg.ScheduleDefinition(
    name="full_pass_every_15_minutes",
    job=full_pass_job,
    cron_schedule="*/15 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Keeps the marts and dashboards within 15 minutes of the ops store.",
)

audit_heads_daily = dg.ScheduleDefinition(
    name="audit_heads_daily",
    job=audit_heads_job,
    cron_schedule="5 0 * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Daily: verify every audit chain and export its head, so a cut-off tail is caught.",
)
