"""Who is looking: the signed-in user as a governance Principal, before any page runs.

Two ways in, chosen by configuration, never by the visitor:
- OIDC (production): when ``.streamlit/secrets.toml`` has an ``[auth]`` section, Streamlit's
  ``st.login()`` signs the visitor in with the identity provider and ``st.user.email`` names them;
  the ops store says whether that e-mail is an active user and with which role and tenant.
- Development sign-in (the embedded default): without ``[auth]``, the sidebar offers the active users
  of the applied example config. It is refused outright when the applied platform config says
  ``environment: production``, so a production deployment without OIDC shows no data at all.

Either way the role comes from the ops store on every run, so a role change or removal takes effect
on the next interaction, not at the next sign-in.
"""

from __future__ import annotations

import logging

import streamlit as st
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from agentprovision.settings import load_settings
from dashboards import ops
from governance.permissions import Principal

LOG = logging.getLogger(__name__)
DEV_USER_KEY = "dev_user"
PRODUCTION_REFUSAL = (
    "Development sign-in is disabled: this platform runs with `environment: production`. "
    "Configure OIDC sign-in (an `[auth]` section in `.streamlit/secrets.toml`, see docs/dashboards.md)."
)


@st.cache_resource(max_entries=4, show_spinner=False)
def _engine(database_url: str) -> Engine:
    # One pooled engine per store URL for the whole server: SQLAlchemy engines are thread-safe.
    return ops.open_engine(database_url)


def ops_engine() -> Engine:
    """The ops store engine; raises ops.OpsStoreUnavailable before the platform has been started."""
    return _engine(load_settings().database_url)


def oidc_configured() -> bool:
    """True when secrets.toml configures an identity provider for st.login."""
    try:
        return "auth" in st.secrets
    except FileNotFoundError:  # no secrets.toml at all: the embedded default
        return False


def sign_in() -> tuple[Principal, Engine]:
    """The signed-in principal and the ops store; otherwise draws the sign-in and stops this run."""
    try:
        engine = ops_engine()
    except ops.OpsStoreUnavailable as exc:
        st.info(str(exc), icon=":material/hourglass_empty:")
        st.stop()
        raise  # st.stop() only returns outside a Streamlit run
    try:
        principal = _oidc_principal(engine) if oidc_configured() else _dev_principal(engine)
    except SQLAlchemyError:
        LOG.exception("sign-in could not read the ops store")
        st.error("Sign-in is unavailable: the ops store could not be read. The error is in the server log.")
        st.stop()
    st.sidebar.caption(f"Signed in as **{principal.user_id}** · {principal.role}")
    return principal, engine


def _oidc_principal(engine: Engine) -> Principal:
    if not st.user.is_logged_in:
        st.title("agentprovision")
        st.write("Sign in with your organisation's account to see the dashboards.")
        st.button("Sign in", key="oidc_sign_in", on_click=st.login, type="primary")
        st.stop()
    email = str(st.user.get("email") or "")
    principal = ops.principal_for(engine, email) if email else None
    if principal is None:
        LOG.warning("signed-in identity %r is not an active platform user", email)
        st.error(f"`{email or 'this account'}` is not an active user of the platform; ask your tenant admin.")
        st.button("Sign out", key="oidc_sign_out", on_click=st.logout)
        st.stop()
    st.sidebar.button("Sign out", key="oidc_sign_out", on_click=st.logout)
    return principal


def _dev_principal(engine: Engine) -> Principal:
    if ops.platform_environment(engine) == "production":
        st.error(PRODUCTION_REFUSAL, icon=":material/lock:")
        st.stop()
    users = {user.user_id: user for user in ops.sign_in_users(engine)}
    if not users:
        st.info("No users yet: apply a config (`agentprovision apply config`) or run `make run`.")
        st.stop()
    if st.session_state.get(DEV_USER_KEY) not in users:
        # Start as the first platform admin: the embedded default's operator sees everything.
        admins = [uid for uid, user in users.items() if user.role == "platform_admin"]
        st.session_state[DEV_USER_KEY] = admins[0] if admins else next(iter(users))
    user_id = st.sidebar.selectbox(
        "Signed in as (development)",
        options=list(users),
        format_func=lambda uid: users[uid].label if uid in users else uid,
        key=DEV_USER_KEY,
        help="Development sign-in: pick any configured user to see the dashboards as them.",
    )
    principal = ops.principal_for(engine, user_id)
    if principal is None:  # removed between listing and picking
        st.error(f"{user_id} is no longer an active user.")
        st.stop()
    return principal
