"""The dashboards in a real browser: a `streamlit run` server over a warehouse the real pipeline built.

The warehouse comes from fixed synthetic events pushed through the platform's own pieces (example
config applied to an ops store, events written, `load_raw`, `dbt build`, `publish`; see
tests/dashboard_fixtures.py). Headless Debian Chromium, driven by Playwright, opens every page as the
development sign-in's default user (the platform admin), waits for the app to finish running, checks
that charts (Vega canvas/SVG) and tables really rendered and that no exception is on the page (a mart
not built yet is reported as a warning naming it, not a failure), and saves a screenshot to
docs/screenshots/<page>.png as evidence. A second pass signs in as a tenant analyst and checks that
another tenant's name never appears.

Skips (with the reason) when Chromium is not installed; REQUIRE_BROWSER=1 makes that a failure.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.dashboard_fixtures import build_pipeline_warehouse

REPO_ROOT = Path(__file__).resolve().parent.parent
APP = REPO_ROOT / "dashboards" / "streamlit_app.py"
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = REPO_ROOT / "docs" / "screenshots"
PAGE_TIMEOUT_MS = 60_000

# url path -> (title on the page, does it draw at least one chart)
PAGES = {
    "": ("Overview", True),
    "monitoring": ("Monitoring", True),
    "agents": ("Agents", True),
    "costs": ("Costs and billing", True),
    "compliance": ("Compliance", True),
    "admin": ("Admin", True),
}
CHART = ".vega-embed canvas, .vega-embed svg.marks"
TABLE = '[data-testid="stDataFrame"], [data-testid="stTable"]'


def _chromium() -> Path:
    if CHROMIUM.exists():
        return CHROMIUM
    reason = f"Chromium is not installed at {CHROMIUM} (Debian package `chromium`; `make test` installs it)"
    if os.environ.get("REQUIRE_BROWSER") == "1":
        pytest.fail(f"REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    _chromium()
    workdir = tmp_path_factory.mktemp("dashboards_e2e")
    published, ops_url = build_pipeline_warehouse(workdir)
    port = _free_port()
    env = dict(os.environ)
    env.update(
        {
            "AGENTPROVISION_STATE_DIR": str(workdir / "state"),
            "AGENTPROVISION_DUCKDB_PATH": str(workdir / "warehouse.duckdb"),
            "AGENTPROVISION_DATABASE_URL": ops_url,
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        }
    )
    env.pop("AGENTPROVISION_WAREHOUSE_TARGET", None)
    assert published == workdir / "warehouse_published.duckdb"
    log = (workdir / "streamlit.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(APP),
            "--server.address",
            "127.0.0.1",
            "--server.port",
            str(port),
            "--server.headless",
            "true",
            "--browser.gatherUsageStats",
            "false",
            "--server.fileWatcherType",
            "none",
        ],  # fmt: skip
        cwd=workdir,  # no .streamlit/secrets.toml here: the development sign-in
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (workdir / "streamlit.log").read_text()
            try:
                if httpx.get(f"{base}/_stcore/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "streamlit did not become healthy within 60 s"
            time.sleep(0.5)
        yield base
    finally:
        os.killpg(process.pid, 15)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
        log.close()


@pytest.fixture(scope="module")
def browser(server: str) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(_chromium()), headless=True, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def _settle(page: object) -> None:
    """Wait until the script run is over: the app's running indicator is gone and no spinner is left."""
    page.wait_for_selector('[data-testid="stApp"]', timeout=PAGE_TIMEOUT_MS)
    page.wait_for_function(
        """() => !document.querySelector('[data-testid="stStatusWidget"]')
               && !document.querySelector('[data-testid="stSpinner"]')""",
        timeout=PAGE_TIMEOUT_MS,
    )
    page.wait_for_timeout(1500)  # vega draws its canvas after the element appears


def _fit_to_content(page: object) -> None:
    """Streamlit scrolls inside its main block, so a full-page shot needs a viewport as tall as the content."""
    height = page.evaluate(
        """() => { const main = document.querySelector('[data-testid="stMainBlockContainer"]');
                   return main ? main.scrollHeight : document.body.scrollHeight; }"""
    )
    page.set_viewport_size({"width": 1440, "height": max(900, min(int(height) + 160, 8000))})
    page.wait_for_timeout(1500)  # charts re-layout to the new size


@pytest.mark.parametrize("path", list(PAGES))
def test_every_page_renders_charts_and_tables(server: str, browser: object, path: str) -> None:
    title, has_chart = PAGES[path]
    page = browser.new_page(viewport={"width": 1440, "height": 2400})
    try:
        page.goto(f"{server}/{path}", wait_until="domcontentloaded", timeout=PAGE_TIMEOUT_MS)
        page.wait_for_selector(f'h1:has-text("{title}")', timeout=PAGE_TIMEOUT_MS)
        page.wait_for_selector(TABLE, timeout=PAGE_TIMEOUT_MS)
        if has_chart:
            page.wait_for_selector(CHART, timeout=PAGE_TIMEOUT_MS)
        _settle(page)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        _fit_to_content(page)
        page.screenshot(path=str(SCREENSHOTS / f"{path or 'overview'}.png"), full_page=True)

        body = page.inner_text("body")
        assert not page.query_selector('[data-testid="stException"]'), body[:2000]
        assert "Traceback" not in body and "Could not load" not in body, body[:2000]
        assert "Signed in as" in body and "ops@agentprovision.example" in body
        assert page.locator(TABLE).count() >= 1
        if has_chart:
            assert page.locator(CHART).count() >= 1
        missing = [line for line in body.splitlines() if "is not in the published warehouse" in line]
        if missing:  # a mart still being built elsewhere: its section shows the empty state; say which
            warnings.warn(f"/{path}: " + " | ".join(missing), stacklevel=1)
    finally:
        page.close()


def test_a_tenant_analyst_sees_only_their_tenant_in_the_browser(server: str, browser: object) -> None:
    page = browser.new_page(viewport={"width": 1440, "height": 1600})
    try:
        page.goto(f"{server}/monitoring", wait_until="domcontentloaded", timeout=PAGE_TIMEOUT_MS)
        page.wait_for_selector('h1:has-text("Monitoring")', timeout=PAGE_TIMEOUT_MS)
        _settle(page)
        # pick the acme analyst in the development sign-in box
        page.get_by_role("combobox", name="Signed in as (development)").click()
        page.get_by_role("option", name="Li Wei · analyst · acme").click()
        page.wait_for_function(
            "() => document.body.innerText.includes('Signed in as li@acme.example')", timeout=PAGE_TIMEOUT_MS
        )
        _settle(page)
        page.wait_for_selector(CHART, timeout=PAGE_TIMEOUT_MS)
        page.screenshot(path=str(SCREENSHOTS / "monitoring-acme-analyst.png"), full_page=True)
        body = page.inner_text("body")
        assert "li@acme.example" in body and "analyst" in body
        nav = page.inner_text('[data-testid="stSidebarNav"]')
        assert "Costs and billing" not in nav and "Admin" not in nav and "Compliance" not in nav
        assert "globex" not in body.lower() and "initech" not in body.lower()
    finally:
        page.close()
