"""Pieces every page shares: the tenant scope from the sidebar and the "no data yet" state.

Data access lives in :mod:`dashboards.data`; this module only renders.
"""

from __future__ import annotations

import streamlit as st

from dashboards import data

TENANT_KEY = "tenant"
ALL_TENANTS = "__all__"  # the selector's "All tenants" option; never a tenant id (ids are slugs)
NO_DATA_MESSAGE = "No data yet: run `make run` or `agentprovision demo --once`."


def tenant_selector(warehouse: data.Warehouse | None) -> str | None:
    """The sidebar's tenant scope; returns the selected tenant id, or None for all tenants."""
    choices = data.tenant_choices(warehouse) if warehouse is not None else []
    labels = {ALL_TENANTS: "All tenants"}
    for tenant_id, name, active in choices:
        labels[tenant_id] = f"{name} ({tenant_id})" + ("" if active else " · removed")
    st.sidebar.selectbox(
        "Tenant",
        options=list(labels),
        format_func=lambda tenant_id: labels.get(tenant_id, tenant_id),
        key=TENANT_KEY,
        help="Every page shows only this tenant's data.",
    )
    if warehouse is not None:
        st.sidebar.caption(f"Warehouse published {warehouse.published_at:%Y-%m-%d %H:%M:%S} UTC")
    return selected_tenant()


def selected_tenant() -> str | None:
    """The tenant scope chosen in the sidebar (None = all tenants); pages pass it to every query."""
    value = st.session_state.get(TENANT_KEY, ALL_TENANTS)
    return None if value in (None, ALL_TENANTS) else value


def scope_label(tenant_id: str | None) -> str:
    return "all tenants" if tenant_id is None else f"tenant `{tenant_id}`"


def require_warehouse() -> data.Warehouse:
    """The published warehouse, or an info message and the end of this page's run."""
    warehouse = data.current_warehouse()
    if warehouse is None:
        st.info(NO_DATA_MESSAGE, icon=":material/hourglass_empty:")
        st.stop()
    return warehouse
