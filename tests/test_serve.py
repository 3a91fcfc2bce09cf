"""`agentprovision serve` (what `make run` ends in): both UIs come up, one Ctrl-C stops both."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
def test_serve_starts_both_uis_and_ctrl_c_stops_both(tmp_path: Path) -> None:
    dagster_port, dashboards_port = free_port(), free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AGENTPROVISION_", "DAGSTER_"))}
    env["AGENTPROVISION_STATE_DIR"] = str(tmp_path / "state")
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "agentprovision"),
            "serve",
            "--dagster-port",
            str(dagster_port),
            "--dashboards-port",
            str(dashboards_port),
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            output.append(line)
            if "Press Ctrl-C" in line:
                break
        text = "".join(output)
        assert f"http://127.0.0.1:{dagster_port}" in text and f"http://127.0.0.1:{dashboards_port}" in text, text
        assert "not answering" not in text, text
        assert httpx.get(f"http://127.0.0.1:{dagster_port}/server_info", timeout=10).status_code == 200
        assert httpx.get(f"http://127.0.0.1:{dashboards_port}/_stcore/health", timeout=10).status_code == 200
        assert (tmp_path / "state" / "dagster" / "dagster.yaml").exists()

        # Ctrl-C in a terminal reaches uv and us alike and uv forwards it: expect it twice.
        process.send_signal(signal.SIGINT)
        time.sleep(0.3)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=90) == 0
        time.sleep(1)
        assert not port_open(dagster_port) and not port_open(dashboards_port)
    finally:
        if process.poll() is None:
            process.kill()
