"""Datasets derived from agent runs: the tenant's curated fine-tuning examples."""

import dagster as dg

from agentprovision.settings import load_settings
from agentprovision.store.audit import append_audit
from agentprovision.store.db import session_factory, transaction
from agents.finetune import export_training_data
from orchestration.partitions import tenant_partitions
from orchestration.resources import OpsStoreResource

DATASETS_DIR = "datasets"  # under the state dir


@dg.asset(
    partitions_def=tenant_partitions,
    group_name="datasets",
    kinds={"python"},
    description="The tenant's succeeded, approved runs as OpenAI chat fine-tuning JSONL, masked by the "
    "gateway's guardrail detectors (agents.finetune); each export is audited.",
)
def finetune_dataset(context: dg.AssetExecutionContext, ops_store: OpsStoreResource) -> dg.MaterializeResult:
    tenant_id = context.partition_key
    out = load_settings().state_dir / DATASETS_DIR / tenant_id / "finetune.jsonl"
    report = export_training_data(ops_store.engine, tenant_id, out)
    # An export of tenant data leaves a trace, like the CLI's `finetune export`.
    with transaction(session_factory(ops_store.engine)) as session:
        append_audit(
            session,
            actor="dagster",
            action="data.exported",
            target_type="training_data",
            target_id=f"{tenant_id}/{out.name}",
            tenant_id=tenant_id,
            source="dagster",
            details={"kind": "fine_tuning_training_data", "path": str(out), "examples": report.examples},
        )
    context.log.info(report.summary())
    return dg.MaterializeResult(
        metadata={
            "path": str(out),
            "examples": report.examples,
            "runs_considered": report.runs_considered,
            "skipped": sum(report.skipped.values()),
            "masked": sum(report.masked.values()),
        }
    )
