"""Run the Dagster UI and the Streamlit dashboards side by side in the foreground.

Each server runs in its own process group so that one Ctrl-C stops both cleanly (SIGINT, then
SIGTERM, then SIGKILL for anything that will not go), and if either dies the other is stopped too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from agentprovision.settings import REPO_ROOT, Settings

EMBEDDED_DAGSTER_YAML = """\
# Embedded default: Dagster keeps its runs, events and schedules in SQLite under this folder.
# Production uses deploy/dagster.yaml (PostgreSQL storage, QueuedRunCoordinator).
telemetry:
  enabled: false
concurrency:
  runs:
    max_concurrent_runs: 4
    tag_concurrency_limits:
      # DuckDB allows one writing process: runs that write the warehouse take turns.
      - key: agentprovision/warehouse-writer
        limit: 1
      # Fairness backstop to the dispatch sensor: one agent-work run per tenant at a time.
      - key: agentprovision/dispatch-tenant
        value:
          applyLimitPerUniqueValue: true
        limit: 1
"""


def prepare_dagster_home(settings: Settings) -> Path:
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(EMBEDDED_DAGSTER_YAML)
    return home


def server_environment(settings: Settings) -> dict[str, str]:
    """The environment both servers and the demo run in: every path resolved from one state dir."""
    env = dict(os.environ)
    env["DAGSTER_HOME"] = str(prepare_dagster_home(settings))
    env["AGENTPROVISION_STATE_DIR"] = str(settings.state_dir)
    env["AGENTPROVISION_DUCKDB_PATH"] = str(settings.duckdb_path)
    env["AGENTPROVISION_DATABASE_URL"] = settings.database_url
    env.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    # The servers' own helpers (dbt, dagster's code servers) are found even when the venv is not on PATH.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def _start(command: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(command, cwd=REPO_ROOT, env=env, start_new_session=True)


def _stop(process: subprocess.Popen, grace: float = 20.0) -> None:
    for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        if process.poll() is not None:
            return
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue


def _wait_ready(url: str, process: subprocess.Popen, timeout: float = 120.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    return False


def _interrupt(*_: object) -> None:
    """Ctrl-C, or a supervisor's SIGTERM: stop both servers cleanly."""
    raise KeyboardInterrupt


def serve_all(
    settings: Settings, dagster_port: int = 3000, dashboards_port: int = 8501, host: str = "127.0.0.1"
) -> int:
    env = server_environment(settings)
    bin_dir = Path(sys.executable).parent
    servers = {
        "Dagster UI": (
            [str(bin_dir / "dagster"), "dev", "-w", "workspace.yaml", "-h", host, "-p", str(dagster_port)],
            f"http://{host}:{dagster_port}",
            f"http://{host}:{dagster_port}/server_info",
        ),
        "Dashboards": (
            [
                str(bin_dir / "streamlit"),
                "run",
                "dashboards/streamlit_app.py",
                "--server.headless",
                "true",
                "--server.address",
                host,
                "--server.port",
                str(dashboards_port),
                "--browser.gatherUsageStats",
                "false",
            ],
            f"http://{host}:{dashboards_port}",
            f"http://{host}:{dashboards_port}/_stcore/health",
        ),
    }
    interrupted = False
    # Installed explicitly: a shell that starts us in the background leaves SIGINT ignored.
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    processes: dict[str, subprocess.Popen] = {}
    try:
        for name, (command, _, _) in servers.items():
            processes[name] = _start(command, env)
        for name, (_, url, health) in servers.items():
            ready = _wait_ready(health, processes[name])
            print(f"{name:<11} {url}" + ("" if ready else "  (not answering yet)"), flush=True)
        print("Press Ctrl-C to stop both.", flush=True)
        while all(p.poll() is None for p in processes.values()):
            time.sleep(0.5)
        for name, process in processes.items():
            if process.poll() is not None:
                print(f"{name} stopped (exit code {process.returncode}); stopping the rest.", flush=True)
    except KeyboardInterrupt:
        interrupted = True
        print("\nStopping...", flush=True)
    finally:
        # A second Ctrl-C (or uv forwarding the first one again) must not cut the shutdown short
        # and leave a server orphaned; _stop escalates to SIGKILL on its own.
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        for process in processes.values():
            _stop(process)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if interrupted else 1
