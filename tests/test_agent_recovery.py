"""Crash recovery: real worker processes killed with SIGKILL at random points, then resumed to the end.

What must hold afterwards: every task finished once; no tool call whose result was checkpointed
ran again; every tool call's side effect happened exactly once; no run event lost or duplicated.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import random
import signal
import time
from collections import Counter
from datetime import UTC
from pathlib import Path

import pytest
from agent_support import ScriptedAgentPeer, agent_entry, ledger_entries, make_tools, runtime_config
from sqlalchemy import select

from agentprovision.apply import apply_config
from agentprovision.store.agent_models import AgentRunState, AgentRunStep
from agentprovision.store.db import make_engine, migrate, session_factory, transaction
from agentprovision.store.models import Event, Task
from agents.gateway import CompletionRequest, Gateway
from agents.runtime.submit import submit_task
from governance.tenancy import tenant_session

KILLS = 8
TASKS = 4

SLOW_TOOLS = {name: {"delay": 0.4} for name in ("kb_search", "repo_inspect")}


def _worker_main(config_dir: str, url: str, ledger: str) -> None:
    """One worker process: its own engine and gateway, runs whatever the tenant has queued or stalled."""
    from agentprovision.config import load_config_dir
    from agentprovision.settings import load_settings
    from agents.runtime import execute_tasks_sync

    config = load_config_dir(Path(config_dir)).config
    engine = make_engine(url)
    tools = make_tools(Path(ledger), **SLOW_TOOLS)
    execute_tasks_sync(config, engine, "acme", tools=tools, settings=load_settings(), lease_seconds=1.0)


def _warm_up(config, engine) -> None:  # type: ignore[no-untyped-def]
    """One model call in the test process, so LiteLLM's lazy imports are done before workers fork from it."""
    gateway = Gateway(config, engine)
    request = CompletionRequest(tenant_id="acme", agent_id="acme-worker", messages=[{"role": "user", "content": "hi"}])
    asyncio.run(gateway.acomplete(request))
    gateway.close()


def _worker(config_dir: Path, url: str, ledger: Path) -> multiprocessing.Process:
    # Forked from the test process, so the worker starts at once with everything imported: a real
    # process that SIGKILL stops at an arbitrary instruction, without paying for imports each time.
    process = multiprocessing.get_context("fork").Process(
        target=_worker_main, args=(str(config_dir), url, str(ledger)), daemon=True
    )
    process.start()
    return process


def test_workers_killed_at_random_points_resume_with_exactly_once_tools_and_events(
    tmp_path: Path, state_env: Path, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEWAY_TEST_KEY", "loopback-key")
    peer = ScriptedAgentPeer().start()
    try:
        _run_with_kills(tmp_path, peer, store_url)
    finally:
        peer.stop()


def _run_with_kills(tmp_path: Path, peer: ScriptedAgentPeer, url: str) -> None:
    rng = random.Random(int(os.environ.get("AGENT_RECOVERY_SEED", "20261124")))
    engine = make_engine(url)
    migrate(engine)
    agents = [agent_entry("acme-worker", "qa_testing", ["kb_search", "repo_inspect"])]
    config_dir = tmp_path / "config"
    config = runtime_config(config_dir, agents=agents, api_base=peer.api_base("m"), max_concurrent_runs=2)
    factory = session_factory(engine)
    with transaction(factory) as session:
        apply_config(session, config, actor="admin@acme.example", source="test")
    with tenant_session(factory, "acme") as session:
        for index in range(TASKS):
            submit_task(
                session, tenant_id="acme", agent_id="acme-worker", task_input={"instructions": f"job {index} [tools=5]"}
            )
    ledger = tmp_path / "ledger.txt"
    _warm_up(config, engine)

    kills = 0
    for _ in range(KILLS):
        worker = _worker(config_dir, url, ledger)
        time.sleep(rng.uniform(0.2, 2.5))
        if worker.is_alive():
            os.kill(worker.pid, signal.SIGKILL)
            kills += 1
        worker.join(timeout=30)
        time.sleep(1.1)  # let the dead worker's leases expire
    for _ in range(5):  # finish whatever is left, without kills
        if _unfinished(factory) == 0:
            break
        worker = _worker(config_dir, url, ledger)
        worker.join(timeout=120)
        time.sleep(1.1)

    assert kills >= 3
    with transaction(factory) as session:
        tasks = list(session.scalars(select(Task)))
        states = {s.run_id: s for s in session.scalars(select(AgentRunState))}
        steps = list(session.scalars(select(AgentRunStep).order_by(AgentRunStep.run_id, AgentRunStep.seq)))
        events = list(session.scalars(select(Event).where(Event.kind.in_(["run", "tool"]))))
    assert {t.status for t in tasks} == {"succeeded"}, Counter(t.status for t in tasks)
    resumed = [s for s in states.values() if s.claims > 1]
    assert resumed, "no run was interrupted mid-way; the test proved nothing"

    # Events: exactly one start and one finish per run, one tool_call per tool call, nothing else.
    per_run = Counter((e.run_id, e.name) for e in events)
    for run_id, state in states.items():
        assert per_run[(run_id, "run_started")] == 1 and per_run[(run_id, "run_finished")] == 1
        finished = next(e for e in events if e.run_id == run_id and e.name == "run_finished").payload
        assert finished["tool_calls"] == per_run[(run_id, "tool_call")] == 5
        assert finished["steps"] == state.steps == 6
    tool_events = Counter((e.run_id, e.payload["tool_call_id"]) for e in events if e.name == "tool_call")
    assert set(tool_events.values()) == {1}

    # The conversation: every tool call has exactly one checkpointed result.
    results = {(s.run_id, s.tool_call_id): s for s in steps if s.role == "tool"}
    assert set(results) == set(tool_events)

    # Side effects: exactly once per tool call, and none executed after its result was checkpointed.
    keys = ledger_entries(ledger)
    assert len(keys) == len(set(keys)) == len(results)
    assert {tuple(k.split()[:2]) for k in keys} == set(results)
    executions = [line.split("\t") for line in ledger.with_suffix(".executions").read_text().splitlines()]
    for key, started, _pid in executions:
        run_id, call_id, _tool = key.split()
        committed = results[(run_id, call_id)].created_at.replace(tzinfo=UTC).timestamp()
        assert float(started) <= committed, f"{key} ran again after its result was checkpointed"
    repeated = len(executions) - len(keys)
    print(json.dumps({"kills": kills, "resumed_runs": len(resumed), "re-executed_in_flight_calls": repeated}))
    engine.dispose()


def _unfinished(factory) -> int:  # type: ignore[no-untyped-def]
    with transaction(factory) as session:
        return len(list(session.scalars(select(Task.task_id).where(Task.status != "succeeded"))))
