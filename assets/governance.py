"""Governance assets: the scheduled export of audit chain heads that makes truncation detectable."""

import dagster as dg

from agentprovision.settings import load_settings
from agentprovision.store.audit import export_heads, latest_exported_heads, verify_chain
from agentprovision.store.db import session_factory, transaction
from governance.cli import HEADS_DIR
from orchestration.resources import OpsStoreResource


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
