"""`agentprovision task / approvals / agents`: scoped to the caller's tenant and role, audited, no tracebacks."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from agent_support import agent_entry, ledger_entries, make_tools, runtime_config
from sqlalchemy import select
from typer.testing import CliRunner

from agentprovision.apply import apply_config
from agentprovision.cli import app
from agentprovision.settings import load_settings
from agentprovision.store.audit import verify_chain
from agentprovision.store.db import open_store, session_factory, transaction
from agentprovision.store.models import AuditRecord

runner = CliRunner()


@pytest.fixture
def deployed(state_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Tenant acme on the sandbox: a triage agent whose first tool needs approval, and a paused agent."""
    agents = [
        agent_entry("acme-triage", "qa_testing", ["open_ticket", "kb_search"]),
        agent_entry("acme-idle", "qa_testing", ["kb_search"], status="paused"),
    ]
    config = runtime_config(tmp_path / "config", agents=agents)
    engine = open_store(load_settings().database_url)
    with transaction(session_factory(engine)) as session:
        apply_config(session, config, actor="admin@acme.example", source="test")
    engine.dispose()
    ledger = tmp_path / "ledger.txt"
    monkeypatch.setattr("agents.runtime.executor.load_tools", lambda: make_tools(ledger))
    return ledger


def cli(actor: str, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env={"AGENTPROVISION_ACTOR": actor})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


OPERATOR, ANALYST, ADMIN, OTHER = "op@acme.example", "li@acme.example", "admin@acme.example", "admin@globex.example"


def test_submit_run_approve_and_inspect_a_task_from_the_cli(deployed: Path) -> None:
    code, out = cli(OPERATOR, "agents", "list")
    assert code == 0 and re.search(r"acme-triage\s+qa_testing\s+1\.0\.0\s+active\s+open_ticket, kb_search", out)
    assert "globex" not in out

    task_input = json.dumps({"instructions": "Triage the flaky login test"})
    code, out = cli(OPERATOR, "task", "submit", "--agent", "acme-triage", "--input", task_input, "--key", "k-1")
    assert code == 0 and out.startswith("queued task ")
    task_id = out.split()[2]
    code, out = cli(OPERATOR, "task", "submit", "--agent", "acme-triage", "--input", task_input, "--key", "k-1")
    assert code == 0 and f"task {task_id} already exists" in out

    code, out = cli(OPERATOR, "task", "run")
    assert code == 0 and f"{task_id}  needs_approval" in out
    code, out = cli(OPERATOR, "approvals", "list")
    assert code == 0 and "acme-triage  open_ticket" in out
    approval_id = out.split()[0]

    code, out = cli(ANALYST, "approvals", "approve", approval_id)
    assert code == 1 and "may not approval.decide" in out and "Traceback" not in out
    code, out = cli(OTHER, "approvals", "approve", approval_id, "--tenant", "acme")
    assert code == 1 and "belongs to tenant globex" in out
    code, out = cli(OPERATOR, "approvals", "approve", approval_id, "--reason", "known flaky test")
    assert code == 0 and f"approved open_ticket for task {task_id}" in out
    code, out = cli(OPERATOR, "approvals", "list")
    assert out.strip() == "no approvals waiting"

    code, out = cli(OPERATOR, "task", "run")
    assert code == 0 and f"{task_id}  succeeded" in out
    assert [line.split()[-1] for line in ledger_entries(deployed)] == ["open_ticket"]

    code, out = cli(ANALYST, "task", "show", task_id)
    assert code == 0
    assert "tool     step 1: open_ticket -> needs_approval" in out and "tool     step 1: open_ticket -> ok" in out
    assert f"approval {approval_id}: open_ticket approved by {OPERATOR}" in out and '"summary"' in out
    code, out = cli(ANALYST, "task", "list", "--status", "succeeded")
    assert code == 0 and task_id in out and "acme-triage" in out

    engine = open_store(load_settings().database_url)
    with transaction(session_factory(engine)) as session:
        audit = list(session.scalars(select(AuditRecord).order_by(AuditRecord.seq)))
        assert verify_chain(session).intact
    engine.dispose()
    decisions = [(a.action, a.actor, a.outcome) for a in audit if a.action.startswith("approval.")]
    assert decisions == [
        ("approval.approve", ANALYST, "denied"),
        ("approval.approve", OTHER, "denied"),
        ("approval.approve", OPERATOR, "success"),
    ]
    assert [a.action for a in audit if a.action == "task.submit"] == ["task.submit"]


def test_rejecting_ends_the_run(deployed: Path) -> None:
    cli(OPERATOR, "task", "submit", "--agent", "acme-triage", "--input", '{"instructions": "x"}')
    cli(OPERATOR, "task", "run")
    approval_id = cli(ADMIN, "approvals", "list")[1].split()[0]
    code, out = cli(ADMIN, "approvals", "reject", approval_id, "--reason", "change freeze")
    assert code == 0 and "the run has ended" in out
    assert cli(OPERATOR, "task", "run")[1].strip() == "nothing to run for tenant acme"
    code, out = cli(OPERATOR, "task", "list")
    assert re.search(r"acme-triage\s+rejected", out)
    assert ledger_entries(deployed) == []


def test_bad_input_and_out_of_scope_requests_get_clear_messages(deployed: Path) -> None:
    cases = [
        ((OPERATOR, "task", "submit", "--agent", "acme-triage", "--input", "{not json"), "--input is not valid JSON"),
        ((OPERATOR, "task", "submit", "--agent", "acme-triage", "--input", "[1]"), "must be a JSON object"),
        ((OPERATOR, "task", "submit", "--agent", "acme-idle"), "acme-idle is paused"),
        ((OPERATOR, "task", "submit", "--agent", "globex-agent"), "not an agent of tenant 'acme'"),
        ((OPERATOR, "task", "submit", "--agent", "acme-triage", "--input", '{"bogus": 1}'), "bogus: Extra inputs"),
        ((ANALYST, "task", "submit", "--agent", "acme-triage"), "may not task.submit"),
        ((OTHER, "task", "list", "--tenant", "acme"), "belongs to tenant globex, not acme"),
        ((OPERATOR, "task", "list", "--status", "done"), "unknown status 'done'"),
        (("nobody@example.com", "agents", "list"), "is not an active user"),
        ((OPERATOR, "approvals", "approve", "no-such-id"), "no approval no-such-id in tenant acme"),
    ]
    for args, message in cases:
        code, out = cli(*args)
        assert code == 1 and message in out and "Traceback" not in out, (args, out)
    code, out = cli(OPERATOR, "task", "submit", "--agent", "acme-triage")
    task_id = out.split()[2]
    code, out = cli(OTHER, "task", "show", task_id)
    assert code == 1 and f"no task {task_id} in tenant globex" in out


def test_the_cli_loads_litellm_only_for_commands_that_call_a_model() -> None:
    # LiteLLM takes about 3 s to import; every CLI command paid it before the gateway and runtime
    # packages loaded their heavy modules lazily.
    probe = (
        "import sys, agentprovision.cli, agents.gateway, agents.runtime.failures\n"
        "assert 'litellm' not in sys.modules, 'the CLI imported LiteLLM'\n"
        "from agents.gateway import Gateway\n"
        "from agents.runtime import execute_tasks_sync\n"
        "assert 'litellm' in sys.modules and callable(execute_tasks_sync) and Gateway.__name__ == 'Gateway'\n"
    )
    completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
