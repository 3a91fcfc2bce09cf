"""Overview: fleet health at a glance for the caller's scope: runs today, spend against budget, alerts."""

from __future__ import annotations

import altair as alt
import streamlit as st

from dashboards import data, ops, ui
from governance.permissions import Action

st.title("Overview")
tenant_id = ui.require(Action.TENANT_VIEW)
warehouse = ui.require_warehouse()
st.caption(f"Showing {ui.scope_label(tenant_id)}.")
sees_costs = ui.can(Action.COST_VIEW, tenant_id)

counts = data.fleet_counts(warehouse, tenant_id)
tenants_col, departments_col, agents_col, active_col, users_col = st.columns(5)
tenants_col.metric("Tenants", counts.tenants, help="Active tenants")
departments_col.metric("Departments", counts.departments, help="Active departments")
agents_col.metric("Agents", counts.agents, help="Agents not retired")
active_col.metric("Active agents", counts.active_agents)
users_col.metric("Users", counts.users, help="Active tenant users; platform staff are not counted")

st.subheader("Today")
runs_col, success_col, spend_col, approvals_col, alerts_col = st.columns(5)
today = ui.load("runs", data.runs_today, warehouse, tenant_id)
if today is not None:
    runs_col.metric("Runs today", today.runs)
    success_col.metric("Success rate today", ui.percent(today.success_rate), help="Succeeded / (succeeded + failed)")
budgets = ui.load("budgets", data.budget_status, warehouse, tenant_id) if sees_costs else None
if sees_costs:
    spend = ui.load("spend", data.spend_month_to_date, warehouse, tenant_id)
    limit = None
    if budgets is not None and not budgets.is_empty():
        level = "platform" if tenant_id is None else "tenant"
        own = budgets.filter(budgets["budget_level"] == level)
        limit = own["hard_limit_usd"][0] if own.height else None
    if spend is not None:
        spend_col.metric(
            "Spend month to date",
            ui.usd(spend),
            help="Against the hard monthly budget of this scope" if limit else None,
            delta=f"of {ui.usd(limit)} budget" if limit else None,
            delta_color="off",
        )
waiting = ui.load("open approvals", ops.pending_approval_count, ui.ops_engine(), tenant_id)
if waiting is not None:
    approvals_col.metric("Open approvals", waiting, help="Tool calls waiting for an approver's decision")
if budgets is not None:
    alerting = budgets.filter(budgets["status"] != "ok")
    alerts_col.metric("Budget alerts", alerting.height, help="Budgets over a limit or forecast to go over")

chart_col, type_col = st.columns(2)
with chart_col:
    st.subheader("Runs, last 14 days")
    runs = ui.load("runs", data.runs_by_day, warehouse, tenant_id, 14)
    if not ui.empty(runs, "No runs in the last 14 days."):
        st.altair_chart(
            alt.Chart(runs)
            .mark_bar()
            .encode(
                x=alt.X("run_date:T", title=None),
                y=alt.Y("sum(runs):Q", title="Runs"),
                color=alt.Color("status:N", title="Status"),
                tooltip=["run_date:T", "status:N", "runs:Q"],
            ),
            key="overview_runs_by_day",
        )

with type_col:
    st.subheader("Agents by type")
    by_type = data.agents_by_type(warehouse, tenant_id)
    if not ui.empty(by_type, "No agents in scope."):
        st.altair_chart(
            alt.Chart(by_type)
            .mark_bar()
            .encode(
                x=alt.X("sum(agents):Q", title="Agents", axis=alt.Axis(tickMinStep=1, format="d")),
                y=alt.Y("agent_type:N", title=None, sort="-x"),
                color=alt.Color("status:N", title="Status"),
                tooltip=["agent_type:N", "status:N", "agents:Q"],
            ),
            key="overview_agents_by_type",
        )

if budgets is not None and not budgets.is_empty():
    alerting = budgets.filter(budgets["status"] != "ok")
    if not alerting.is_empty():
        st.subheader("Budget alerts")
        st.dataframe(
            alerting.select(
                "budget_level", "scope_id", "spend_mtd_usd", "hard_limit_usd", "forecast_month_end_usd", "status"
            ),
            hide_index=True,
            key="overview_budget_alerts",
            column_config={
                "budget_level": "Level",
                "scope_id": "Scope",
                "status": "Status",
                "spend_mtd_usd": st.column_config.NumberColumn("Spend MTD", format="dollar"),
                "hard_limit_usd": st.column_config.NumberColumn("Hard limit", format="dollar"),
                "forecast_month_end_usd": st.column_config.NumberColumn("Forecast month end", format="dollar"),
            },
        )

st.subheader("Tenants")
tenants = data.tenants(warehouse, tenant_id)
if not sees_costs:  # budgets are money: only for roles that see costs
    tenants = tenants.drop("budget_hard_usd", "budget_soft_usd")
st.dataframe(
    tenants,
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
