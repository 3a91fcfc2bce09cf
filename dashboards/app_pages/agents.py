"""Agents: the fleet in scope, one agent in detail, submitting a task, and the approvals queue."""

from __future__ import annotations

import altair as alt
import polars as pl
import streamlit as st

from dashboards import data, ops, ui
from governance.permissions import Action, PermissionDenied

st.title("Agents")
tenant_id = ui.require(Action.AGENT_VIEW)
warehouse = ui.require_warehouse()
st.caption(f"Showing {ui.scope_label(tenant_id)}.")
sees_costs = ui.can(Action.COST_VIEW, tenant_id)
sees_prompts = ui.can(Action.PROMPT_VIEW, tenant_id)

fleet = data.agents(warehouse, tenant_id)
activity = ui.load("agent activity", data.agent_activity, warehouse, tenant_id)
if activity is not None:
    fleet = fleet.join(activity, on="agent_id", how="left")

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

columns = [
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
]
if activity is not None:
    columns += ["last_run_at", "last_status", "runs_30d"] + (["cost_30d_usd"] if sees_costs else [])
st.caption(f"{shown.height} of {fleet.height} agents")
st.dataframe(
    shown.select(columns),
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
        "last_run_at": st.column_config.DatetimeColumn("Last run (UTC)", format="YYYY-MM-DD HH:mm"),
        "last_status": "Last status",
        "runs_30d": "Runs (30 d)",
        "cost_30d_usd": st.column_config.NumberColumn("Cost (30 d)", format="dollar"),
    },
)


if activity is not None and shown.filter(pl.col("runs_30d") > 0).height:
    st.altair_chart(
        alt.Chart(shown.filter(pl.col("runs_30d") > 0).select("agent_id", "tenant_id", "runs_30d", "last_status"))
        .mark_bar()
        .encode(
            x=alt.X("runs_30d:Q", title="Runs, last 30 days"),
            y=alt.Y("agent_id:N", title=None, sort="-x"),
            color=alt.Color("tenant_id:N", title="Tenant"),
            tooltip=["agent_id:N", "tenant_id:N", "runs_30d:Q", "last_status:N"],
        )
        .properties(height=alt.Step(22)),
        key="agents_runs_chart",
    )


def _or_dash(value: object) -> str:
    return "-" if value is None or value == "" else str(value)


st.subheader("Agent detail")
detail = None
if shown.is_empty():
    st.caption("No agents match the filters.")
else:
    names = dict(zip(shown["agent_id"].to_list(), shown["agent_name"].to_list(), strict=True))
    agent_id = st.selectbox(
        "Agent",
        options=list(names),
        format_func=lambda key: f"{names.get(key) or key} ({key})",
        key="agents_detail",
    )
    detail = data.agent(warehouse, tenant_id, agent_id) if agent_id else None

if detail is not None:
    st.markdown(f"**{detail['agent_name']}** · `{detail['agent_id']}`")
    type_metric, version_metric, status_metric = st.columns(3)
    type_metric.metric("Type", detail["agent_type"])
    version_metric.metric("Version", detail["agent_version"])
    status_metric.metric("Status", detail["status"])
    owner = _or_dash(detail["owner_user_id"])
    if detail["owner_name"]:
        owner = f"{detail['owner_name']} ({owner})"
    fields = {
        "Tenant": f"{_or_dash(detail['tenant_display_name'])} ({detail['tenant_id']})",
        "Department": f"{_or_dash(detail['department_name'])} ({_or_dash(detail['department_id'])})",
        "Cost centre": _or_dash(detail["cost_centre"]),
        "Owner": owner,
        "Schedule": detail["schedule"] or "none (on trigger or on demand)",
        "Event triggers": _or_dash(detail["trigger_count"]),
        "Tools": _or_dash(detail["tool_count"]),
        "Model tier": _or_dash(detail["required_tier"]),
        "Min context window": _or_dash(detail["min_context_window"]),
        "Limits (steps / tokens / seconds)": " / ".join(
            _or_dash(detail[k]) for k in ("max_steps", "max_tokens", "max_wall_seconds")
        ),
        "Config version": _or_dash(detail["config_version"]),
        "Updated": f"{detail['updated_at']:%Y-%m-%d %H:%M} UTC" if detail["updated_at"] else "-",
    }
    if sees_costs:
        fields["Monthly budget (hard / soft)"] = (
            f"{ui.usd(detail['budget_hard_usd'])} / {ui.usd(detail['budget_soft_usd'])}"
        )
    st.table({"field": list(fields), "value": list(fields.values())}, hide_index=True, hide_header=True)

    versions_col, runs_col = st.columns([1, 2])
    with versions_col:
        st.markdown("**Versions**")
        versions = ui.load("agent versions", data.agent_versions, warehouse, tenant_id, detail["agent_id"])
        if not ui.empty(versions, "No version history yet."):
            st.dataframe(versions, hide_index=True, key="agents_versions")
    with runs_col:
        st.markdown("**Recent runs**")
        runs = ui.load("recent runs", data.recent_runs, warehouse, tenant_id, detail["agent_id"])
        if not ui.empty(runs, "No runs yet."):
            if not sees_costs:
                runs = runs.drop("cost_usd")
            st.dataframe(
                runs,
                hide_index=True,
                key="agents_recent_runs",
                column_config={
                    "started_at": st.column_config.DatetimeColumn("Started (UTC)", format="YYYY-MM-DD HH:mm:ss"),
                    "cost_usd": st.column_config.NumberColumn("Cost", format="dollar"),
                },
            )

# --- submit a task --------------------------------------------------------------------------------
engine = ui.ops_engine()
who = ui.principal()
if detail is not None and ui.can(Action.TASK_SUBMIT, detail["tenant_id"]):
    st.subheader("Submit a task")
    with st.form("agents_submit_form", clear_on_submit=True):
        st.caption(f"For **{detail['agent_name']}**; queued now, run by the dispatcher, recorded in the audit trail.")
        instructions = st.text_area("Instructions", key="agents_submit_text", max_chars=ops.MAX_TASK_TEXT)
        submitted = st.form_submit_button("Queue task", type="primary", key="agents_submit_button")
    if submitted:
        try:
            task_id = ops.submit_task(engine, who, detail["tenant_id"], detail["agent_id"], instructions)
            st.success(f"Queued task `{task_id}`.")
        except (ValueError, PermissionDenied) as exc:
            st.error(str(exc))

# --- queue and approvals -------------------------------------------------------------------------
st.subheader("Task queue")
queue = ui.load("task queue", ops.task_queue, engine, tenant_id, with_prompts=sees_prompts)
if queue is not None:
    if queue:
        st.dataframe(
            pl.DataFrame(queue),
            hide_index=True,
            key="agents_task_queue",
            column_config={"created_at": st.column_config.DatetimeColumn("Queued (UTC)", format="YYYY-MM-DD HH:mm:ss")},
        )
    else:
        st.caption("No tasks yet.")

st.subheader("Approvals")
requests = ui.load("approvals", ops.approvals, engine, tenant_id, with_arguments=sees_prompts)
if requests is not None:
    pending = [r for r in requests if r["status"] == "pending"]
    if not requests:
        st.caption("No approval requests.")
    else:
        st.dataframe(
            pl.DataFrame(requests),
            hide_index=True,
            key="agents_approvals_table",
        )
    deciding = [r for r in pending if ui.can(Action.APPROVAL_DECIDE, r["tenant_id"])]
    if deciding:
        for request in deciding:
            key = request["approval_id"]
            with st.container(border=True):
                st.markdown(f"**{request['agent_id']}** wants to call `{request['tool']}` (run `{request['run_id']}`)")
                reason = st.text_input("Reason (optional)", key=f"approval_reason_{key}")
                approve_col, reject_col = st.columns(2)
                choice = None
                if approve_col.button("Approve", key=f"approve_{key}", type="primary"):
                    choice = True
                if reject_col.button("Reject", key=f"reject_{key}"):
                    choice = False
                if choice is not None:
                    try:
                        ops.decide(engine, who, request["tenant_id"], key, choice, reason)
                        st.success("Approved." if choice else "Rejected.")
                    except (ValueError, PermissionDenied) as exc:
                        st.error(str(exc))
    elif pending:
        st.caption(f"{len(pending)} pending; only approvers of the tenant can decide them.")
