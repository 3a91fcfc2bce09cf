"""Agents: the fleet in scope, filterable by type and status, and one agent in detail."""

from __future__ import annotations

import polars as pl
import streamlit as st

from dashboards import data, ui

st.title("Agents")
warehouse = ui.require_warehouse()
tenant_id = ui.selected_tenant()
st.caption(f"Showing {ui.scope_label(tenant_id)}; pick the tenant in the sidebar.")

fleet = data.agents(warehouse, tenant_id)

type_col, status_col = st.columns(2)
types = type_col.multiselect(
    "Type",
    options=sorted(fleet["agent_type"].drop_nulls().unique().to_list()),
    key="agents_type_filter",
    placeholder="All types",
)
statuses = status_col.multiselect(
    "Status",
    options=sorted(fleet["status"].drop_nulls().unique().to_list()),
    key="agents_status_filter",
    placeholder="All statuses",
)
shown = fleet
if types:
    shown = shown.filter(pl.col("agent_type").is_in(types))
if statuses:
    shown = shown.filter(pl.col("status").is_in(statuses))

st.caption(f"{shown.height} of {fleet.height} agents")
st.dataframe(
    shown.select(
        "agent_name",
        "agent_id",
        "tenant_id",
        "agent_type",
        "agent_version",
        "status",
        "owner_user_id",
        "schedule",
        "department_name",
        "cost_centre",
    ),
    hide_index=True,
    key="agents_table",
    column_config={
        "agent_name": "Agent",
        "agent_id": "Id",
        "tenant_id": "Tenant",
        "agent_type": "Type",
        "agent_version": "Version",
        "status": "Status",
        "owner_user_id": "Owner",
        "schedule": "Schedule",
        "department_name": "Department",
        "cost_centre": "Cost centre",
    },
)

st.subheader("Agent detail")
if shown.is_empty():
    st.caption("No agents match the filters.")
    st.stop()

names = dict(zip(shown["agent_id"].to_list(), shown["agent_name"].to_list(), strict=True))
agent_id = st.selectbox(
    "Agent",
    options=list(names),
    format_func=lambda key: f"{names.get(key) or key} ({key})",
    key="agents_detail",
)
detail = data.agent(warehouse, tenant_id, agent_id) if agent_id else None
if detail is None:
    st.caption("Pick an agent.")
    st.stop()


def _or_dash(value: object) -> str:
    return "-" if value is None or value == "" else str(value)


def _usd(value: object) -> str:
    return "-" if value is None else f"${float(value):,.2f}"


st.markdown(f"**{detail['agent_name']}** · `{detail['agent_id']}`")
type_metric, version_metric, status_metric = st.columns(3)
type_metric.metric("Type", detail["agent_type"])
version_metric.metric("Version", detail["agent_version"])
status_metric.metric("Status", detail["status"])
owner = _or_dash(detail["owner_user_id"])
if detail["owner_name"]:
    owner = f"{detail['owner_name']} ({owner})"
st.table(
    {
        "field": [
            "Tenant",
            "Department",
            "Cost centre",
            "Owner",
            "Schedule",
            "Event triggers",
            "Tools",
            "Model tier",
            "Min context window",
            "Limits (steps / tokens / seconds)",
            "Monthly budget (hard / soft)",
            "Config version",
            "Updated",
        ],
        "value": [
            f"{_or_dash(detail['tenant_display_name'])} ({detail['tenant_id']})",
            f"{_or_dash(detail['department_name'])} ({_or_dash(detail['department_id'])})",
            _or_dash(detail["cost_centre"]),
            owner,
            detail["schedule"] or "none (on trigger or on demand)",
            _or_dash(detail["trigger_count"]),
            _or_dash(detail["tool_count"]),
            _or_dash(detail["required_tier"]),
            _or_dash(detail["min_context_window"]),
            " / ".join(_or_dash(detail[k]) for k in ("max_steps", "max_tokens", "max_wall_seconds")),
            f"{_usd(detail['budget_hard_usd'])} / {_usd(detail['budget_soft_usd'])}",
            _or_dash(detail["config_version"]),
            f"{detail['updated_at']:%Y-%m-%d %H:%M} UTC" if detail["updated_at"] else "-",
        ],
    },
    hide_index=True,
    hide_header=True,
)
