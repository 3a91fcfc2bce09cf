"""Schedules."""

from __future__ import annotations

import dagster as dg

from orchestration.jobs import (
    audit_heads_job,
    compliance_evidence_job,
    finetune_dataset_job,
    full_pass_job,
    retention_job,
)
from orchestration.partitions import TENANT_TAG, tenant_partitions

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


def per_tenant_schedule(name: str, job: dg.UnresolvedAssetJobDefinition, cron: str, description: str):
    """A schedule launching one run per tenant partition: partitions, not schedules, grow with tenants."""

    @dg.schedule(
        name=name, job=job, cron_schedule=cron, default_status=dg.DefaultScheduleStatus.RUNNING, description=description
    )
    def _schedule(context: dg.ScheduleEvaluationContext):
        tenants = sorted(context.instance.get_dynamic_partitions(tenant_partitions.name))
        if not tenants:
            return dg.SkipReason("no tenant partitions yet (the tenant partition sensor adds them from config)")
        day = context.scheduled_execution_time.strftime("%Y-%m-%d")
        return [
            dg.RunRequest(run_key=f"{name}:{tenant}:{day}", partition_key=tenant, tags={TENANT_TAG: tenant})
            for tenant in tenants
        ]

    return _schedule


compliance_evidence_daily = per_tenant_schedule(
    "compliance_evidence_daily",
    compliance_evidence_job,
    "30 1 * * *",
    "Daily: every tenant's evidence pack for the month to date.",
)

retention_daily = per_tenant_schedule(
    "retention_daily",
    retention_job,
    "0 2 * * *",
    "Daily: every tenant's retention policy; the runs take turns writing the warehouse.",
)

finetune_datasets_weekly = per_tenant_schedule(
    "finetune_datasets_weekly",
    finetune_dataset_job,
    "0 3 * * 0",
    "Weekly (Sundays): every tenant's fine-tuning dataset, rebuilt from its runs.",
)
