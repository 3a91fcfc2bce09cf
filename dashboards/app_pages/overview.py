"""Overview: how big the platform (or one tenant) is: tenants, agents, users, and their mix."""

from __future__ import annotations

import altair as alt
import streamlit as st

from dashboards import data, ui

st.title("Overview")
warehouse = ui.require_warehouse()
tenant_id = ui.selected_tenant()
st.caption(f"Showing {ui.scope_label(tenant_id)}.")

counts = data.fleet_counts(warehouse, tenant_id)
tenants_col, departments_col, agents_col, active_col, users_col = st.columns(5)
tenants_col.metric("Tenants", counts.tenants, help="Active tenants")
departments_col.metric("Departments", counts.departments, help="Active departments")
agents_col.metric("Agents", counts.agents, help="Agents not retired")
active_col.metric("Active agents", counts.active_agents)
users_col.metric("Users", counts.users, help="Active tenant users; platform staff are not counted")

by_type_col, by_role_col = st.columns(2)

with by_type_col:
    st.subheader("Agents by type")
    by_type = data.agents_by_type(warehouse, tenant_id)
    if by_type.is_empty():
        st.caption("No agents in scope.")
    else:
        st.altair_chart(
            alt.Chart(by_type)
            .mark_bar()
            .encode(
                x=alt.X("sum(agents):Q", title="Agents"),
                y=alt.Y("agent_type:N", title=None, sort="-x"),
                color=alt.Color("status:N", title="Status"),
                tooltip=["agent_type:N", "status:N", "agents:Q"],
            ),
            key="overview_agents_by_type",
        )

with by_role_col:
    st.subheader("Users by role")
    by_role = data.users_by_role(warehouse, tenant_id)
    if by_role.is_empty():
        st.caption("No users in scope.")
    else:
        st.altair_chart(
            alt.Chart(by_role)
            .mark_bar()
            .encode(
                x=alt.X("users:Q", title="Users"),
                y=alt.Y("role:N", title=None, sort="-x"),
                tooltip=["role:N", "users:Q"],
            ),
            key="overview_users_by_role",
        )

st.subheader("Tenants")
st.dataframe(
    data.tenants(warehouse, tenant_id),
    hide_index=True,
    key="overview_tenants",
    column_config={
        "tenant_id": "Tenant",
        "display_name": "Name",
        "region": "Region",
        "plan": "Plan",
        "status": "Status",
        "budget_hard_usd": st.column_config.NumberColumn("Monthly hard budget", format="dollar"),
        "budget_soft_usd": st.column_config.NumberColumn("Monthly soft budget", format="dollar"),
        "department_count": "Departments",
        "agent_count": "Agents",
        "active_agent_count": "Active agents",
        "user_count": "Users",
    },
)
