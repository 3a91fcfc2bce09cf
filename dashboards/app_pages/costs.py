"""Costs and billing: spend by dimension, budget burn-down with forecast, FOCUS chargeback, invoice variances."""

from __future__ import annotations

import calendar
from datetime import date, timedelta

import altair as alt
import polars as pl
import streamlit as st

from agentprovision import reports
from dashboards import data, ui
from governance.permissions import Action

WINDOWS = {"Last 7 days": 7, "Last 30 days": 30, "Last 90 days": 90, "Last 365 days": 365}

st.title("Costs and billing")
tenant_id = ui.require(Action.COST_VIEW)
warehouse = ui.require_warehouse()
st.caption(f"Showing {ui.scope_label(tenant_id)}. Amounts in USD, as settled by the gateway.")

# --- spend --------------------------------------------------------------------------------------
st.subheader("Spend")
dimensions = list(data.COST_DIMENSIONS)
if tenant_id is not None:
    dimensions.remove("tenant")
by_col, window_col = st.columns(2)
by = by_col.selectbox("Spend by", options=dimensions, key="costs_spend_by")
window = window_col.selectbox("Window", options=list(WINDOWS), index=1, key="costs_window")
spend = ui.load("spend", data.spend_by, warehouse, tenant_id, WINDOWS[window], by)
if not ui.empty(spend, "No spend in this window."):
    totals = (
        spend.group_by("group").agg(pl.col("cost_usd").sum(), pl.col("calls").sum()).sort("cost_usd", descending=True)
    )
    total_col, calls_col = st.columns(2)
    total_col.metric("Spend", ui.usd(totals["cost_usd"].sum()))
    calls_col.metric("Model calls", f"{int(totals['calls'].sum()):,}")
    bars_col, daily_col = st.columns(2)
    bars_col.altair_chart(
        alt.Chart(totals)
        .mark_bar()
        .encode(
            x=alt.X("cost_usd:Q", title="Spend (USD)"),
            y=alt.Y("group:N", title=None, sort="-x"),
            tooltip=["group:N", alt.Tooltip("cost_usd:Q", format="$,.2f"), "calls:Q"],
        )
        .properties(height=260),
        key="costs_spend_bars",
    )
    daily_col.altair_chart(
        alt.Chart(spend)
        .mark_area()
        .encode(
            x=alt.X("cost_date:T", title=None),
            y=alt.Y("sum(cost_usd):Q", title="Spend per day (USD)", stack=True),
            color=alt.Color("group:N", title=by.capitalize()),
            tooltip=["cost_date:T", "group:N", alt.Tooltip("sum(cost_usd):Q", format="$,.2f")],
        )
        .properties(height=260),
        key="costs_spend_daily",
    )

# --- budgets --------------------------------------------------------------------------------------
st.subheader("Budgets this month")
budgets = ui.load("budgets", data.budget_status, warehouse, tenant_id)
if not ui.empty(budgets, "No budgets in scope."):
    st.dataframe(
        budgets.drop("days_elapsed", "days_in_month", "department_id", "agent_id"),
        hide_index=True,
        key="costs_budgets_table",
        column_config={
            "month_start": st.column_config.DateColumn("Month"),
            "budget_level": "Level",
            "scope_id": "Scope",
            "tenant_id": "Tenant",
            "soft_limit_usd": st.column_config.NumberColumn("Soft limit", format="dollar"),
            "hard_limit_usd": st.column_config.NumberColumn("Hard limit", format="dollar"),
            "spend_mtd_usd": st.column_config.NumberColumn("Spend MTD", format="dollar"),
            "daily_burn_usd": st.column_config.NumberColumn("Daily burn", format="dollar"),
            "forecast_month_end_usd": st.column_config.NumberColumn("Forecast month end", format="dollar"),
            "projected_soft_cross_date": st.column_config.DateColumn("Crosses soft limit"),
            "projected_hard_cross_date": st.column_config.DateColumn("Crosses hard limit"),
            "status": "Status",
        },
    )
    labels = [f"{row['budget_level']}: {row['scope_id']}" for row in budgets.iter_rows(named=True)]
    # Start on the budget most at risk: a breached or forecast-over one before the rest.
    at_risk = [i for i, status in enumerate(budgets["status"].to_list()) if status != "ok"]
    chosen = st.selectbox(
        "Burn-down for",
        options=range(len(labels)),
        index=at_risk[0] if at_risk else 0,
        format_func=labels.__getitem__,
        key="costs_burn",
    )
    budget = budgets.row(chosen, named=True)
    scope_key = budget["department_id"] if budget["budget_level"] == "department" else budget["agent_id"]
    daily = ui.load(
        "daily spend",
        data.daily_spend_for_budget,
        warehouse,
        tenant_id,
        budget["budget_level"],
        budget["tenant_id"],
        scope_key,
    )
    if daily is not None:
        month_start: date = budget["month_start"]
        days_in_month = calendar.monthrange(month_start.year, month_start.month)[1]
        month_end = month_start + timedelta(days=days_in_month - 1)
        actual = daily.sort("cost_date").with_columns(pl.col("cost_usd").cum_sum().alias("cumulative_usd"))
        actual = actual.select(pl.col("cost_date").alias("day"), "cumulative_usd", pl.lit("actual").alias("series"))
        last_day = actual["day"].max() if actual.height else month_start
        spent = float(budget["spend_mtd_usd"] or 0)
        forecast = pl.DataFrame(
            {
                "day": [last_day, month_end],
                "cumulative_usd": [spent, float(budget["forecast_month_end_usd"] or spent)],
                "series": ["forecast", "forecast"],
            },
            schema={"day": pl.Date, "cumulative_usd": pl.Float64, "series": pl.String},
        )
        lines = pl.concat([actual.with_columns(pl.col("cumulative_usd").cast(pl.Float64)), forecast])
        limits = pl.DataFrame(
            {
                "limit": ["soft limit", "hard limit"],
                "usd": [budget["soft_limit_usd"], budget["hard_limit_usd"]],
            },
            schema={"limit": pl.String, "usd": pl.Float64},
        ).drop_nulls()
        chart = (
            alt.Chart(lines)
            .mark_line(point=True)
            .encode(
                x=alt.X("day:T", title=None, scale=alt.Scale(domain=[month_start.isoformat(), month_end.isoformat()])),
                y=alt.Y("cumulative_usd:Q", title="Spend this month (USD)"),
                color=alt.Color("series:N", title=None),
                strokeDash=alt.StrokeDash("series:N", legend=None),
                tooltip=["day:T", "series:N", alt.Tooltip("cumulative_usd:Q", format="$,.2f")],
            )
        )
        rules = (
            alt.Chart(limits)
            .mark_rule(strokeDash=[4, 4])
            .encode(y="usd:Q", color=alt.value("#d62728"), tooltip=["limit:N", alt.Tooltip("usd:Q", format="$,.2f")])
        )
        st.altair_chart((chart + rules).properties(height=300), key="costs_burn_down")
        crossings = []
        for name, column in (("soft", "projected_soft_cross_date"), ("hard", "projected_hard_cross_date")):
            if budget[column] is not None:
                crossings.append(f"{name} limit on {budget[column]:%Y-%m-%d}")
        st.caption(
            f"Status **{budget['status']}**; forecast to month end {ui.usd(budget['forecast_month_end_usd'])}; "
            + ("projected to cross the " + " and the ".join(crossings) if crossings else "no limit crossing projected")
            + "."
        )

# --- chargeback ----------------------------------------------------------------------------------
st.subheader("Chargeback (FOCUS)")
months = ui.load("chargeback", data.chargeback_months, warehouse, tenant_id)
if months is not None and not months:
    st.caption("No chargeback lines in scope.")
elif months:
    month = st.selectbox(
        "Billing month", options=months, format_func=lambda d: f"{d:%Y-%m}", key="costs_chargeback_month"
    )
    lines = ui.load("chargeback", data.chargeback, warehouse, tenant_id, month)
    if lines is not None:
        st.dataframe(lines, hide_index=True, key="costs_chargeback_table")
        if ui.can(Action.CHARGEBACK_EXPORT, tenant_id):
            stem = f"chargeback-{tenant_id or 'all-tenants'}-{month:%Y-%m}"
            csv_col, parquet_col = st.columns(2)
            csv_col.download_button(
                "Download CSV",
                data=reports.focus_csv_bytes(lines),
                file_name=f"{stem}.csv",
                mime="text/csv",
                key="costs_chargeback_csv",
            )
            parquet_col.download_button(
                "Download Parquet",
                data=reports.focus_parquet_bytes(lines),
                file_name=f"{stem}.parquet",
                mime="application/vnd.apache.parquet",
                key="costs_chargeback_parquet",
            )

# --- invoices and unit costs -------------------------------------------------------------------
st.subheader("Invoice reconciliation")
variances = ui.load("invoice variances", data.invoice_variances, warehouse, tenant_id)
if not ui.empty(variances, "No provider invoices loaded for this scope."):
    outside = variances.filter(~pl.col("within_tolerance")).height
    st.caption(f"{outside} of {variances.height} invoice lines are outside tolerance.")
    st.dataframe(
        variances,
        hide_index=True,
        key="costs_invoice_variances",
        column_config={
            "invoice_cost_usd": st.column_config.NumberColumn("Invoice", format="dollar"),
            "gateway_cost_usd": st.column_config.NumberColumn("Gateway", format="dollar"),
            "variance_usd": st.column_config.NumberColumn("Variance", format="dollar"),
            "variance_pct": st.column_config.NumberColumn("Variance %", format="%.2f%%"),
        },
    )

st.subheader("Cost per outcome")
per_outcome = ui.load("cost per outcome", data.cost_per_outcome, warehouse, tenant_id)
if not ui.empty(per_outcome, "No agent outcomes recorded yet."):
    st.dataframe(
        per_outcome,
        hide_index=True,
        key="costs_per_outcome",
        column_config={
            "cost_usd": st.column_config.NumberColumn("Cost", format="dollar"),
            "cost_per_outcome_usd": st.column_config.NumberColumn("Cost per outcome", format="dollar"),
        },
    )
