"""Governance assets: audit chain heads (truncation detection), per-tenant evidence packs and retention."""

from datetime import UTC, datetime, timedelta

import dagster as dg

from agentprovision.settings import load_settings
from agentprovision.store.audit import append_audit, export_heads, latest_exported_heads, verify_chain
from agentprovision.store.db import session_factory, transaction
from governance.cli import HEADS_DIR
from governance.evidence import EvidenceError, Period, build_sections, write_pack
from governance.retention import applied_config, apply_retention
from orchestration.partitions import tenant_partitions
from orchestration.resources import OpsStoreResource

# Named in audit records of what the orchestrator did on its own (no person acted).
DAGSTER_ACTOR = "dagster"
EVIDENCE_DIR = "evidence"  # under the state dir, where `agentprovision compliance evidence` writes too


@dg.asset(
    group_name="governance",
    kinds={"python"},
    description="Verifies every audit chain against the last exported heads, then exports the current heads.",
)
def audit_chain_heads(ops_store: OpsStoreResource) -> dg.MaterializeResult:
    directory = load_settings().state_dir / HEADS_DIR
    with transaction(session_factory(ops_store.engine)) as session:
        result = verify_chain(session, latest_exported_heads(directory))
        if not result.intact:
            # Failing the run raises the alert; the heads are not re-exported over a broken trail.
            raise dg.Failure(f"audit chain {result.chain!r} broken at record {result.first_bad_seq}: {result.problem}")
        path = export_heads(session, directory)
    return dg.MaterializeResult(metadata={"records": result.records, "chains": result.chains, "export": str(path)})


@dg.asset(
    partitions_def=tenant_partitions,
    group_name="compliance",
    kinds={"python"},
    description="The tenant's evidence pack (SOC 2, ISO 27001, GDPR) for the month to date, rebuilt daily; "
    "on the first of a month the previous month's pack is finalised too.",
)
def compliance_evidence(context: dg.AssetExecutionContext, ops_store: OpsStoreResource) -> dg.MaterializeResult:
    tenant_id = context.partition_key
    now = datetime.now(UTC)
    periods = [Period.parse(f"{now:%Y-%m}")]
    if now.day == 1:
        periods.insert(0, Period.parse(f"{now - timedelta(days=1):%Y-%m}"))
    out_dir = load_settings().state_dir / EVIDENCE_DIR
    written, findings = [], 0
    try:
        with transaction(session_factory(ops_store.engine)) as session:
            for period in periods:
                sections = build_sections(session, tenant_id, period, now=now)
                target = write_pack(sections, tenant_id, period, out_dir, generated_by=DAGSTER_ACTOR)
                findings += sum(len(s.findings) for s in sections)
                written.append(str(target))
                append_audit(
                    session,
                    actor=DAGSTER_ACTOR,
                    action="evidence.export",
                    target_type="evidence_pack",
                    target_id=f"{tenant_id}/{period.label}",
                    tenant_id=tenant_id,
                    source="dagster",
                    details={"path": str(target), "findings": sum(len(s.findings) for s in sections)},
                )
    except EvidenceError as exc:  # e.g. the tenant left config after the run was queued
        raise dg.Failure(str(exc), allow_retries=False) from None
    return dg.MaterializeResult(metadata={"packs": "\n".join(written), "findings": findings})


@dg.asset(
    partitions_def=tenant_partitions,
    group_name="compliance",
    kinds={"python", "duckdb"},
    description="Enforces the tenant's retention policy (GDPR Art. 5) in the ops store and the warehouse, audited.",
)
def data_retention(context: dg.AssetExecutionContext, ops_store: OpsStoreResource) -> dg.MaterializeResult:
    tenant_id = context.partition_key
    config = applied_config(ops_store.engine)
    if config is None:
        raise dg.Failure(
            "no admin config has been applied yet; run `agentprovision apply config/`", allow_retries=False
        )
    if tenant_id not in {tf.tenant.id for tf in config.tenants}:
        raise dg.Failure(f"tenant {tenant_id!r} is not in the applied config", allow_retries=False)
    report = apply_retention(config, ops_store.engine, warehouse=load_settings(), tenants=[tenant_id])
    (result,) = report.tenants
    return dg.MaterializeResult(
        metadata={
            "usage_events_deleted": result.usage_events_deleted,
            "other_events_deleted": result.other_events_deleted,
            "prompts_stripped": result.prompts_stripped,
            "task_inputs_emptied": result.task_inputs_emptied,
            "warehouse_events_deleted": result.warehouse_events_deleted,
        }
    )
