"""Compliance: the audit trail, searchable, and the history of applied admin config versions."""

from __future__ import annotations

import streamlit as st

from dashboards import data, ui

st.title("Compliance")
warehouse = ui.require_warehouse()
tenant_id = ui.selected_tenant()

st.subheader("Audit trail")
scope_note = f"Showing {ui.scope_label(tenant_id)}; pick the tenant in the sidebar."
if tenant_id is not None:
    scope_note += " Platform-level records (such as config applies) have no tenant: see them under All tenants."
st.caption(scope_note)
actor_col, action_col = st.columns(2)
actor = actor_col.text_input("Actor contains", key="compliance_actor", placeholder="e.g. dana@acme.example")
actions = action_col.multiselect(
    "Action",
    options=data.audit_actions(warehouse, tenant_id),
    key="compliance_actions",
    placeholder="All actions",
)
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

st.subheader("Config versions")
st.caption("Each version is one applied admin config for the whole platform: not filtered by tenant.")
st.dataframe(
    data.config_versions(warehouse),
    hide_index=True,
    key="compliance_config_versions",
    column_config={
        "config_version": "Version",
        "applied_at": st.column_config.DatetimeColumn("Applied (UTC)", format="YYYY-MM-DD HH:mm:ss"),
        "applied_by": "Applied by",
        "summary": "Summary",
        "change_count": "Changes",
        "is_rollback": "Rollback",
        "rollback_of_version": st.column_config.NumberColumn("Rollback of", format="%d"),
        "is_current": "Current",
    },
)
