"""Compliance: the audit trail and its chain verification, policy decisions, guardrails, retention, evidence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import altair as alt
import polars as pl
import streamlit as st

from dashboards import data, ops, ui
from governance.evidence import EvidenceError
from governance.permissions import Action, PermissionDenied

WINDOW_DAYS = 30

st.title("Compliance")
tenant_id = ui.require(Action.AUDIT_VIEW)
warehouse = ui.require_warehouse()
engine = ui.ops_engine()
who = ui.principal()

# --- audit trail ------------------------------------------------------------------------------------
st.subheader("Audit trail")
if ui.can(Action.AUDIT_VERIFY, tenant_id):
    # Verification reads the live ops store (the warehouse copy is not the evidence), so it runs on request.
    if st.button("Verify the audit chain", key="compliance_verify"):
        with st.spinner("Verifying the hash chain..."):
            try:
                st.session_state["compliance_verification"] = (tenant_id, ops.verify_audit(engine, who, tenant_id))
            except Exception:  # noqa: BLE001 - shown briefly, logged in full
                ui.LOG.exception("audit verification failed")
                st.error("The audit chain could not be verified. The error is in the server log.")
    checked = st.session_state.get("compliance_verification")
    if checked is not None and checked[0] == tenant_id:
        result = checked[1]
        if result.intact:
            st.success(f"Audit trail intact: {result.records} records in {result.chains} chain(s) verified.")
        else:
            st.error(
                f"Audit trail BROKEN in chain `{result.chain}` at record seq {result.first_bad_seq}: {result.problem}"
            )
scope_note = f"Showing {ui.scope_label(tenant_id)}."
if tenant_id is not None:
    scope_note += " Platform-level records (such as config applies) have no tenant and are not listed."
st.caption(scope_note)
actor_col, action_col = st.columns(2)
actor = actor_col.text_input("Actor contains", key="compliance_actor", placeholder="e.g. dana@acme.example")
actions = action_col.multiselect(
    "Action",
    options=data.audit_actions(warehouse, tenant_id),
    key="compliance_actions",
    placeholder="All actions",
)
with st.spinner("Searching the audit trail..."):
    audit = data.audit_events(warehouse, tenant_id, actor=actor, actions=tuple(actions))
if audit.matching > audit.rows.height:
    st.caption(f"Latest {audit.rows.height} of {audit.matching} matching records; narrow the search for older ones.")
else:
    st.caption(f"{audit.matching} matching records")
st.dataframe(
    audit.rows,
    hide_index=True,
    key="compliance_audit_table",
    column_config={
        "seq": "Seq",
        "occurred_at": st.column_config.DatetimeColumn("Occurred (UTC)", format="YYYY-MM-DD HH:mm:ss"),
        "tenant_id": "Tenant",
        "actor": "Actor",
        "action": "Action",
        "target_type": "Target type",
        "target_id": "Target",
        "record_id": "Record id",
    },
)

# --- policy decisions and guardrails -----------------------------------------------------------------
st.subheader(f"Policy decisions, last {WINDOW_DAYS} days")
decisions = ui.load("policy decisions", data.policy_decisions_by_day, warehouse, tenant_id, WINDOW_DAYS)
if not ui.empty(decisions, "No policy decisions in this window."):
    st.altair_chart(
        alt.Chart(decisions)
        .mark_bar()
        .encode(
            x=alt.X("decision_date:T", title=None),
            y=alt.Y("sum(decisions):Q", title="Decisions"),
            color=alt.Color("decision:N", title="Decision"),
            tooltip=["decision_date:T", "decision:N", "action:N", "decisions:Q"],
        )
        .properties(height=240),
        key="compliance_decisions_chart",
    )
violations = ui.load("policy violations", data.policy_violations, warehouse, tenant_id)
if violations is not None:
    st.markdown(f"**Violations** ({violations.height})")
    if not ui.empty(violations, "No blocked, refused or redacted requests."):
        st.dataframe(
            violations,
            hide_index=True,
            key="compliance_violations",
            column_config={
                "occurred_at": st.column_config.DatetimeColumn("Occurred (UTC)", format="YYYY-MM-DD HH:mm:ss")
            },
        )

guard_col, retention_col = st.columns(2)
with guard_col:
    st.subheader("PII and content guardrails")
    guardrails = ui.load("guardrail statistics", data.guardrail_stats, warehouse, tenant_id, WINDOW_DAYS)
    if not ui.empty(guardrails, "No model calls in this window."):
        total = int(guardrails["calls"].sum())
        acted = int(guardrails.filter(pl.col("guardrail_action").is_in(data.GUARDRAIL_INTERVENED))["calls"].sum())
        st.metric(
            "Calls masked or blocked",
            f"{acted:,} of {total:,}",
            help=f"Model calls a PII or secrets guardrail changed or stopped, last {WINDOW_DAYS} days",
        )
        st.altair_chart(
            alt.Chart(guardrails)
            .mark_arc(innerRadius=50)
            .encode(
                theta="calls:Q",
                color=alt.Color("guardrail_action:N", title="Guardrail action"),
                tooltip=["guardrail_action:N", "calls:Q"],
            )
            .properties(height=220),
            key="compliance_guardrail_chart",
        )

with retention_col:
    st.subheader("Retention")
    policies = ui.load("retention policies", ops.retention_policies, engine, tenant_id)
    oldest = ui.load("retained data", data.oldest_call_by_tenant, warehouse, tenant_id)
    if policies is not None:
        now = datetime.now(UTC)
        rows = []
        ages = {} if oldest is None else {r["tenant_id"]: r["oldest_call_at"] for r in oldest.iter_rows(named=True)}
        for policy in policies:
            days = policy["retention_days"]
            oldest_at = ages.get(policy["tenant_id"])
            overdue = bool(days and oldest_at and oldest_at < now - timedelta(days=days))
            rows.append(
                {
                    **policy,
                    "oldest_call_at": oldest_at,
                    "status": "data older than policy" if overdue else "within policy",
                }
            )
        if rows:
            st.dataframe(pl.DataFrame(rows), hide_index=True, key="compliance_retention")
        else:
            st.caption("No tenants in scope.")

# --- evidence ----------------------------------------------------------------------------------------
st.subheader("Evidence pack")
if tenant_id is None:
    st.caption("Evidence packs are per tenant: pick a tenant in the sidebar.")
elif ui.can(Action.EVIDENCE_EXPORT, tenant_id):
    today = datetime.now(UTC).date()
    quarter = f"{today.year}-Q{(today.month - 1) // 3 + 1}"
    period_col, build_col = st.columns([2, 1])
    period = period_col.text_input("Period (YYYY-Qn or YYYY-MM)", value=quarter, key="compliance_evidence_period")
    if build_col.button("Build evidence pack", key="compliance_evidence_build"):
        with st.spinner("Building the evidence pack..."):
            try:
                name, payload = ops.evidence_pack(engine, who, tenant_id, period.strip())
                st.session_state["compliance_evidence"] = (tenant_id, name, payload)
            except (EvidenceError, PermissionDenied) as exc:
                st.error(str(exc))
    built = st.session_state.get("compliance_evidence")
    if built is not None and built[0] == tenant_id:
        st.download_button(
            f"Download {built[1]}",
            data=built[2],
            file_name=built[1],
            mime="application/zip",
            key="compliance_evidence_download",
        )
else:
    st.caption("Your role cannot export evidence packs.")
