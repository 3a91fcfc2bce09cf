"""agentprovision dashboards: the entrypoint `make run` serves (`streamlit run dashboards/streamlit_app.py`).

It signs the visitor in (dashboards.auth), lists the pages their role may open, draws the shared
sidebar (tenant scope) and hands over to the selected page in app_pages/. To add a page: write
app_pages/<name>.py and list it in PAGES below with the action that opens it.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

try:  # the project is installed (editable) in the venv; fall back to the repo root when it isn't
    import dashboards  # noqa: F401
except ImportError:  # pragma: no cover - only outside the project's environment
    sys.path.insert(0, str(HERE.parent))

import streamlit as st  # noqa: E402

from dashboards import auth, data, ui  # noqa: E402
from governance.permissions import MATRIX, Action  # noqa: E402

# (section, file, title, icon, the action a role needs for the page to be listed at all)
PAGES = (
    ("Fleet", "overview.py", "Overview", ":material/dashboard:", Action.TENANT_VIEW),
    ("Fleet", "monitoring.py", "Monitoring", ":material/monitor_heart:", Action.RUN_VIEW),
    ("Fleet", "agents.py", "Agents", ":material/smart_toy:", Action.AGENT_VIEW),
    ("Finance", "costs.py", "Costs and billing", ":material/payments:", Action.COST_VIEW),
    ("Governance", "compliance.py", "Compliance", ":material/policy:", Action.AUDIT_VIEW),
    ("Governance", "admin.py", "Admin", ":material/admin_panel_settings:", Action.ROLE_GRANT),
)

st.set_page_config(page_title="agentprovision", page_icon=":material/hub:", layout="wide")
principal, engine = auth.sign_in()
ui.set_principal(principal, engine)

sections: dict[str, list[st.Page]] = {}
for section, file, title, icon, action in PAGES:
    # Listing is by role; each page still authorises against the chosen tenant before it reads.
    if action in MATRIX[principal.role]:
        sections.setdefault(section, []).append(
            st.Page(HERE / "app_pages" / file, title=title, icon=icon, default=file == "overview.py")
        )
page = st.navigation(sections)

warehouse = data.current_warehouse()
try:
    ui.tenant_selector(warehouse)
    page.run()
except data.WarehouseError as exc:
    st.warning(str(exc), icon=":material/database:")
