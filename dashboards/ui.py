"""Pieces every page shares: who is looking and at which tenant, access checks, loading and empty states.

Data access lives in :mod:`dashboards.data` (warehouse) and :mod:`dashboards.ops` (ops store); this
module only decides scope and renders.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import streamlit as st
from sqlalchemy import Engine

from dashboards import data
from governance.permissions import Action, Principal, authorize

LOG = logging.getLogger(__name__)
TENANT_KEY = "tenant"
ALL_TENANTS = "__all__"  # the selector's "All tenants" option; never a tenant id (ids are slugs)
NO_DATA_MESSAGE = "No data yet: run `make run` or `agentprovision demo --once`."
_PRINCIPAL_KEY = "_principal"  # set by the entry file on every run; no widget writes it
_ENGINE_KEY = "_ops_engine"

T = TypeVar("T")


def set_principal(principal: Principal, engine: Engine) -> None:
    st.session_state[_PRINCIPAL_KEY] = principal
    st.session_state[_ENGINE_KEY] = engine


def principal() -> Principal:
    return st.session_state[_PRINCIPAL_KEY]


def ops_engine() -> Engine:
    return st.session_state[_ENGINE_KEY]


def can(action: Action, tenant_id: str | None) -> bool:
    return authorize(principal(), action, tenant_id).allowed


def tenant_selector(warehouse: data.Warehouse | None) -> str | None:
    """The sidebar's tenant scope; returns the selected tenant id, or None for all tenants.

    A tenant's user is held to their own tenant; only platform users choose, and "All tenants" too.
    """
    who = principal()
    if not who.is_platform:
        st.session_state[TENANT_KEY] = who.tenant_id
        st.sidebar.selectbox("Tenant", options=[who.tenant_id], key=TENANT_KEY, disabled=True)
    else:
        choices = data.tenant_choices(warehouse) if warehouse is not None else []
        labels = {ALL_TENANTS: "All tenants"}
        for tenant_id, name, active in choices:
            labels[tenant_id] = f"{name} ({tenant_id})" + ("" if active else " · removed")
        if st.session_state.get(TENANT_KEY) not in labels:
            st.session_state[TENANT_KEY] = ALL_TENANTS  # e.g. a tenant user's scope left behind by a user switch
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
    """The tenant scope (None = all tenants); a tenant user's own tenant whatever the session holds."""
    who = principal()
    if not who.is_platform:
        return who.tenant_id
    value = st.session_state.get(TENANT_KEY, ALL_TENANTS)
    return None if value in (None, ALL_TENANTS) else value


def scope_label(tenant_id: str | None) -> str:
    return "all tenants" if tenant_id is None else f"tenant `{tenant_id}`"


def require(action: Action) -> str | None:
    """The page's tenant scope when the principal may do `action` on it; otherwise a notice and stop."""
    tenant_id = selected_tenant()
    decision = authorize(principal(), action, tenant_id)
    if not decision.allowed:
        st.warning(f"Your role cannot see this page for {scope_label(tenant_id)}: {decision.reason}.")
        st.stop()
    return tenant_id


def require_warehouse() -> data.Warehouse:
    """The published warehouse, or an info message and the end of this page's run."""
    warehouse = data.current_warehouse()
    if warehouse is None:
        st.info(NO_DATA_MESSAGE, icon=":material/hourglass_empty:")
        st.stop()
    return warehouse


def load(what: str, func: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """Run one section's query under a spinner; a missing mart is an empty state, a failure a short message.

    Returns None when nothing can be shown; the caller then skips the section's rendering.
    """
    try:
        with st.spinner(f"Loading {what}..."):
            return func(*args, **kwargs)
    except data.MartMissing as exc:
        st.info(f"No {what} yet: the `{exc.mart}` mart is not in the published warehouse. {NO_DATA_MESSAGE}")
    except LookupError:  # "no such thing": the caller words it
        raise
    except data.WarehouseError as exc:
        LOG.warning("%s: %s", what, exc)
        st.warning(f"Could not load {what}: {exc}")
    except Exception:  # a query failure must not take the page down; the details go to the server log
        LOG.exception("loading %s failed", what)
        st.error(f"Could not load {what}. The error is in the server log.")
    return None


def empty(frame: Any, message: str) -> bool:
    """True (after a caption) when a loaded frame has no rows; None (not loaded) counts as empty, silently."""
    if frame is None:
        return True
    if frame.is_empty():
        st.caption(message)
        return True
    return False


def usd(value: object) -> str:
    return "-" if value is None else f"${float(value):,.2f}"


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"
