"""agentprovision dashboards: the entrypoint `make run` serves (`streamlit run dashboards/streamlit_app.py`).

It sets the page up, draws the shared sidebar (tenant scope) and hands over to the selected page in
app_pages/. To add a page: write app_pages/<name>.py and list it in PAGES below.
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

from dashboards import data, ui  # noqa: E402

PAGES = {
    "Fleet": [
        st.Page(HERE / "app_pages" / "overview.py", title="Overview", icon=":material/dashboard:", default=True),
        st.Page(HERE / "app_pages" / "agents.py", title="Agents", icon=":material/smart_toy:"),
    ],
    "Governance": [
        st.Page(HERE / "app_pages" / "compliance.py", title="Compliance", icon=":material/policy:"),
    ],
}

st.set_page_config(page_title="agentprovision", page_icon=":material/hub:", layout="wide")
page = st.navigation(PAGES)

warehouse = data.current_warehouse()
try:
    ui.tenant_selector(warehouse)
    page.run()
except data.WarehouseError as exc:
    st.warning(str(exc), icon=":material/database:")
