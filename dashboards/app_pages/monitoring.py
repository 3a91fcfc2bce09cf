"""Monitoring: runs, success and error rates, latency and fallback/guardrail rates over time; failed runs.

The charts sit in a fragment that re-runs on its own every REFRESH_SECONDS while auto-refresh is on, so
an operator can leave the page open; the warehouse cache key follows the published file, so each
refresh reads the newest pipeline pass.
"""

from __future__ import annotations

from datetime import timedelta

import altair as alt
import polars as pl
import streamlit as st

from dashboards import data, ui
from governance.permissions import Action

REFRESH_SECONDS = 30
WINDOWS = {"Last 24 hours": 1, "Last 7 days": 7, "Last 30 days": 30, "Last 90 days": 90}

st.title("Monitoring")
tenant_id = ui.require(Action.RUN_VIEW)
ui.require_warehouse()
sees_costs = ui.can(Action.COST_VIEW, tenant_id)

window_col, by_col, refresh_col = st.columns([2, 2, 1])
window = window_col.selectbox("Window", options=list(WINDOWS), index=2, key="monitoring_window")
breakdowns = list(data.RUN_BREAKDOWNS)
if tenant_id is not None:
    breakdowns.remove("tenant")
by = by_col.selectbox("Break down by", options=breakdowns, key="monitoring_breakdown")
auto = refresh_col.toggle("Auto-refresh", value=True, key="monitoring_auto_refresh", help=f"Every {REFRESH_SECONDS} s")
days = WINDOWS[window]


@st.fragment(run_every=timedelta(seconds=REFRESH_SECONDS) if auto else None)
def live_view() -> None:
    warehouse = data.current_warehouse()  # a refresh picks up a newly published warehouse
    if warehouse is None:
        st.info(ui.NO_DATA_MESSAGE)
        return
    st.caption(
        f"Showing {ui.scope_label(tenant_id)}, {window.lower()}; "
        f"data as published {warehouse.published_at:%Y-%m-%d %H:%M:%S} UTC."
    )
    runs = ui.load("runs", data.runs_by_day, warehouse, tenant_id, days)
    if runs is not None and not runs.is_empty():
        total = int(runs["runs"].sum())
        succeeded = int(runs.filter(pl.col("status") == "succeeded")["runs"].sum())
        failed = int(runs.filter(pl.col("status") == "failed")["runs"].sum())
        finished = succeeded + failed
        runs_metric, success_metric, error_metric = st.columns(3)
        runs_metric.metric("Runs", total)
        success_metric.metric("Success rate", ui.percent(succeeded / finished if finished else None))
        error_metric.metric("Error rate", ui.percent(failed / finished if finished else None))
        st.altair_chart(
            alt.Chart(runs)
            .mark_bar()
            .encode(
                x=alt.X("run_date:T", title=None),
                y=alt.Y("sum(runs):Q", title="Runs"),
                color=alt.Color("status:N", title="Status"),
                tooltip=["run_date:T", "status:N", "runs:Q"],
            )
            .properties(height=260),
            key="monitoring_runs_chart",
        )
    elif runs is not None:
        st.caption("No runs in this window.")

    st.subheader("Model calls: latency and rates")
    sla = ui.load("model-call service levels", data.sla_daily, warehouse, tenant_id, days)
    if not ui.empty(sla, "No model calls in this window."):
        latency_col, rates_col = st.columns(2)
        latency = sla.unpivot(
            index=["sla_date", "model_name"],
            on=["latency_p50_ms", "latency_p95_ms"],
            variable_name="percentile",
            value_name="latency_ms",
        )
        latency_col.altair_chart(
            alt.Chart(latency)
            .mark_line(point=True)
            .encode(
                x=alt.X("sla_date:T", title=None),
                y=alt.Y("latency_ms:Q", title="Latency (ms)"),
                color=alt.Color("model_name:N", title="Model"),
                strokeDash=alt.StrokeDash("percentile:N", title="Percentile"),
                tooltip=["sla_date:T", "model_name:N", "percentile:N", "latency_ms:Q"],
            )
            .properties(height=260),
            key="monitoring_latency_chart",
        )
        rates = (
            sla.group_by("sla_date")
            .agg(
                (pl.col(name) * pl.col("calls")).sum() / pl.col("calls").sum()
                for name in ("error_rate", "fallback_rate", "guardrail_rate")
            )
            .unpivot(index="sla_date", variable_name="rate", value_name="value")
        )
        rates_col.altair_chart(
            alt.Chart(rates)
            .mark_line(point=True)
            .encode(
                x=alt.X("sla_date:T", title=None),
                y=alt.Y("value:Q", title="Share of calls", axis=alt.Axis(format="%")),
                color=alt.Color("rate:N", title="Rate"),
                tooltip=["sla_date:T", "rate:N", alt.Tooltip("value:Q", format=".1%")],
            )
            .properties(height=260),
            key="monitoring_rates_chart",
        )

    sla_by = "model" if by not in data.SLA_BREAKDOWNS else by
    st.markdown(f"**Model calls by {sla_by}**")
    sla_table = ui.load("model-call service levels", data.sla_breakdown, warehouse, tenant_id, days, sla_by)
    if not ui.empty(sla_table, "No model calls in this window."):
        st.dataframe(
            sla_table,
            hide_index=True,
            key="monitoring_sla_table",
            column_config={
                "group": sla_by.capitalize(),
                "worst_day_p50_ms": st.column_config.NumberColumn("Latency p50, worst day (ms)", format="%d"),
                "worst_day_p95_ms": st.column_config.NumberColumn("Latency p95, worst day (ms)", format="%d"),
                "error_rate": st.column_config.NumberColumn("Error rate", format="percent"),
                "fallback_rate": st.column_config.NumberColumn("Fallback rate", format="percent"),
                "guardrail_rate": st.column_config.NumberColumn("Guardrail rate", format="percent"),
            },
        )

    st.subheader(f"Runs by {by}")
    breakdown = ui.load("run breakdown", data.runs_breakdown, warehouse, tenant_id, days, by)
    if not ui.empty(breakdown, "No runs in this window."):
        if not sees_costs:
            breakdown = breakdown.drop("cost_usd")
        st.dataframe(
            breakdown,
            hide_index=True,
            key="monitoring_breakdown_table",
            column_config={
                "group": by.capitalize(),
                "success_rate": st.column_config.NumberColumn("Success rate", format="percent"),
                "error_rate": st.column_config.NumberColumn("Error rate", format="percent"),
                "duration_p50_ms": st.column_config.NumberColumn("Duration p50 (ms)", format="%d"),
                "duration_p95_ms": st.column_config.NumberColumn("Duration p95 (ms)", format="%d"),
                "cost_usd": st.column_config.NumberColumn("Cost", format="dollar"),
            },
        )

    st.subheader("Latest failed runs")
    failed_runs = ui.load("failed runs", data.latest_failed_runs, warehouse, tenant_id)
    if not ui.empty(failed_runs, "No failed runs."):
        st.dataframe(
            failed_runs,
            hide_index=True,
            key="monitoring_failed_runs",
            column_config={
                "finished_at": st.column_config.DatetimeColumn("Finished (UTC)", format="YYYY-MM-DD HH:mm:ss"),
                "error_class": "Error class",
            },
        )


live_view()
