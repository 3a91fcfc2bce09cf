"""Admin (tenant_admin, platform_admin): tenants, users and roles, integrations and their health, config versions.

Changes themselves are made in the config YAML and applied with the CLI (reviewed, versioned,
audited); this page shows the state that produced and the difference between any two versions.
"""

from __future__ import annotations

import altair as alt
import polars as pl
import streamlit as st

from dashboards import data, ops, ui
from governance.permissions import Action

st.title("Admin")
tenant_id = ui.require(Action.USER_VIEW)
warehouse = ui.require_warehouse()
engine = ui.ops_engine()
st.caption(f"Showing {ui.scope_label(tenant_id)}. Change these in the config files and `agentprovision apply`.")

st.subheader("Tenants")
st.dataframe(data.tenants(warehouse, tenant_id), hide_index=True, key="admin_tenants")

st.subheader("Users and roles")
users = data.users(warehouse, tenant_id)
roles = sorted(users["role"].drop_nulls().unique().to_list())
role_filter = st.multiselect("Role", options=roles, key="admin_role_filter", placeholder="All roles")
if role_filter:
    users = users.filter(pl.col("role").is_in(role_filter))
role_col, table_col = st.columns([1, 2])
with role_col:
    by_role = users.group_by("role").len("users").sort("users", descending=True)
    if not by_role.is_empty():
        st.altair_chart(
            alt.Chart(by_role)
            .mark_bar()
            .encode(
                x=alt.X("users:Q", title="Users", axis=alt.Axis(tickMinStep=1, format="d")),
                y=alt.Y("role:N", title=None, sort="-x"),
                tooltip=["role:N", "users:Q"],
            )
            .properties(height=220),
            key="admin_users_by_role",
        )
with table_col:
    st.dataframe(users, hide_index=True, key="admin_users")

st.subheader("Integrations")
if ui.can(Action.INTEGRATION_VIEW, tenant_id):
    integrations = ui.load("integrations", ops.integrations, engine, tenant_id)
    if integrations is not None:
        if integrations:
            frame = pl.DataFrame(integrations)
            healthy = frame.filter(pl.col("health") == "healthy").height
            st.caption(f"{healthy} of {frame.height} integrations healthy.")
            st.dataframe(
                frame,
                hide_index=True,
                key="admin_integrations",
                column_config={
                    "last_sync_at": st.column_config.DatetimeColumn("Last sync (UTC)", format="YYYY-MM-DD HH:mm"),
                    "last_success_at": st.column_config.DatetimeColumn("Last success (UTC)", format="YYYY-MM-DD HH:mm"),
                },
            )
        else:
            st.caption("No integrations configured.")

st.subheader("Config versions")
if ui.can(Action.CONFIG_HISTORY, tenant_id):
    versions = ui.load("config versions", data.config_versions, warehouse)
    if not ui.empty(versions, "No config applied yet."):
        st.dataframe(
            versions,
            hide_index=True,
            key="admin_config_versions",
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
        numbers = versions["config_version"].to_list()  # newest first
        if len(numbers) > 1:
            old_col, new_col = st.columns(2)
            new = new_col.selectbox("Compare version", options=numbers, index=0, key="admin_diff_new")
            old = old_col.selectbox("against version", options=numbers, index=1, key="admin_diff_old")
            try:
                changes = ui.load("config diff", ops.config_diff, engine, int(old), int(new), tenant_id)
            except LookupError as exc:  # the ops store is the source of versions' content; say which is missing
                st.caption(str(exc))
                changes = None
            if changes is not None:
                if changes:
                    st.code("\n".join(changes), language="diff")
                else:
                    st.caption(f"No changes in {ui.scope_label(tenant_id)} between versions {old} and {new}.")
