"""Fine-tuning: curated, masked training data from real run records; jobs through LiteLLM against a loopback
fake of OpenAI's files and fine-tuning API; registration into the config; the permission-checked, audited CLI."""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from sqlalchemy import Engine, select
from typer.testing import CliRunner
from werkzeug import Request, Response

from agentprovision.cli import app
from agentprovision.config import load_config_dir
from agentprovision.store import models as m
from agentprovision.store.agent_models import AgentApproval, AgentRunStep
from agentprovision.store.db import open_store, session_factory, transaction
from agents.finetune import (
    FineTuneError,
    Provider,
    check_training_file,
    export_training_data,
    job_status,
    register_model,
    submit_job,
)

EXAMPLE_CONFIG = Path(__file__).resolve().parent.parent / "config"
START = datetime(2026, 3, 1, tzinfo=UTC)
EMAIL, PHONE = "dana.reyes@acme.example", "+1 415 555 0134"
API_KEY = "sk-proj-" + "a1B2c3D4e5F6g7H8i9J0" * 2


def seed_tenant(session: Any, tenant: str) -> None:
    session.add(
        m.Tenant(
            tenant_id=tenant,
            display_name=tenant,
            region="us",
            plan="business",
            max_concurrent_runs=1,
            budget_hard_usd=Decimal(100),
            config_version=1,
        )
    )
    session.flush()
    session.add(
        m.Agent(
            agent_id=f"{tenant}-helper",
            tenant_id=tenant,
            name="helper",
            agent_type="data_analysis",
            version="1.0.0",
            department_id="eng",
            owner="o@x.example",
            status="active",
            config_version=1,
            spec={},
        )
    )
    session.flush()


def add_run(
    session: Any, tenant: str, n: int, status: str, messages: list[dict[str, Any]], approvals: tuple[str, ...] = ()
) -> str:
    run_id, task_id = f"{tenant}-run-{n}", f"{tenant}-task-{n}"
    agent = f"{tenant}-helper"
    session.add(
        m.Task(task_id=task_id, tenant_id=tenant, agent_id=agent, source="cli", idempotency_key=task_id, input={})
    )
    session.flush()
    session.add(
        m.Run(
            run_id=run_id,
            tenant_id=tenant,
            agent_id=agent,
            task_id=task_id,
            agent_version="1.0.0",
            status=status,
            started_at=START + timedelta(hours=n),
        )
    )
    for seq, message in enumerate(messages, start=1):
        session.add(
            AgentRunStep(
                run_id=run_id,
                seq=seq,
                tenant_id=tenant,
                role=message["role"],
                tool_call_id=message.get("tool_call_id"),
                message=message,
            )
        )
    for index, decision in enumerate(approvals):
        session.add(
            AgentApproval(
                approval_id=f"{run_id}-a{index}",
                tenant_id=tenant,
                run_id=run_id,
                task_id=task_id,
                agent_id=agent,
                tool="open_ticket",
                tool_call_id=f"call-{index}",
                arguments={},
                status=decision,
            )
        )
    session.flush()
    return run_id


def conversation(question: str, answer: str | None, *, tool: bool = False) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a data analyst for acme."},
        {"role": "user", "content": question},
    ]
    if tool:
        arguments = json.dumps({"sql": f"SELECT * FROM marts.fct_llm_calls WHERE owner = '{EMAIL}'"})
        messages += [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call-1",
                        "type": "function",
                        "function": {"name": "warehouse_query", "arguments": arguments},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call-1", "content": f'{{"rows": [["{PHONE}", 3]]}}'},
            {"role": "tool", "tool_call_id": "call-unknown", "content": "a result without its call"},
        ]
    if answer is not None:
        messages.append({"role": "assistant", "content": answer, "reasoning": "internal, not for training"})
    return messages


def seed_runs(engine: Engine) -> dict[str, str]:
    with transaction(session_factory(engine)) as session:
        seed_tenant(session, "acme")
        seed_tenant(session, "globex")
        return {
            "tool": add_run(
                session,
                "acme",
                1,
                "succeeded",
                conversation(f"Spend for {EMAIL}? key {API_KEY}", "It was $3.", tool=True),
            ),
            "approved": add_run(
                session, "acme", 2, "succeeded", conversation("Open a ticket", "Ticket opened."), ("approved",)
            ),
            "rejected": add_run(
                session, "acme", 3, "succeeded", conversation("Post to chat", "Posted."), ("approved", "rejected")
            ),
            "failed": add_run(session, "acme", 4, "failed", conversation("Broken", "no")),
            "unanswered": add_run(session, "acme", 5, "succeeded", conversation("Hello?", None, tool=True)),
            "duplicate": add_run(session, "acme", 6, "succeeded", conversation("Open a ticket", "Ticket opened.")),
            "other tenant": add_run(session, "globex", 7, "succeeded", conversation("Globex secret", "Globex answer")),
        }


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_export_keeps_succeeded_approved_runs_masks_personal_data_and_skips_the_rest(
    store: Engine, tmp_path: Path
) -> None:
    seed_runs(store)
    out = tmp_path / "acme.jsonl"
    report = export_training_data(store, "acme", out)
    assert report.runs_considered == 5  # the failed run and globex's are never read
    assert report.examples == 2
    assert report.skipped == Counter({"with an unapproved action": 1, "without a final answer": 1, "duplicates": 1})
    assert report.masked == Counter({"email": 2, "phone": 1, "api_key": 1})
    examples = read_jsonl(out)
    text = out.read_text()
    for secret in (EMAIL, PHONE, API_KEY, "Globex", "internal, not for training"):
        assert secret not in text
    with_tool, plain = examples
    assert [msg["role"] for msg in with_tool["messages"]] == ["system", "user", "assistant", "tool", "assistant"]
    call = with_tool["messages"][2]["tool_calls"][0]
    assert call["type"] == "function" and call["function"]["name"] == "warehouse_query"
    assert "[EMAIL]" in json.loads(call["function"]["arguments"])["sql"]
    assert with_tool["messages"][3] == {
        "role": "tool",
        "tool_call_id": "call-1",
        "content": '{"rows": [["[PHONE]", 3]]}',
    }
    assert "[API_KEY]" in with_tool["messages"][1]["content"]
    assert [t["function"]["name"] for t in with_tool["tools"]] == ["warehouse_query"]
    assert with_tool["tools"][0]["function"]["parameters"]["type"] == "object"
    assert plain == {
        "messages": [
            {"role": "system", "content": "You are a data analyst for acme."},
            {"role": "user", "content": "Open a ticket"},
            {"role": "assistant", "content": "Ticket opened."},
        ]
    }
    assert check_training_file(out) == 2
    later = export_training_data(store, "acme", tmp_path / "since.jsonl", since=START + timedelta(hours=3))
    assert (later.runs_considered, later.examples) == (3, 1)  # runs 3, 5 and 6; 6 is no longer a duplicate


def test_a_training_file_is_checked_before_it_is_sent(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    cases = [
        ("", "holds no examples"),
        ("{not json\n", "not JSON"),
        (json.dumps({"prompt": "x"}) + "\n", "non-empty `messages` list"),
        (json.dumps({"messages": [{"role": "wizard", "content": "x"}]}) + "\n", "every message needs a role"),
        (json.dumps({"messages": [{"role": "user", "content": "x"}]}) + "\n", "last message must be the assistant"),
        (json.dumps(good).replace("hello", f"mail {EMAIL}") + "\n", "personal data or secrets in the file (1 email)"),
    ]
    for content, message in cases:
        path.write_text(content)
        with pytest.raises(FineTuneError, match=re.escape(message)):
            check_training_file(path)
    with pytest.raises(FineTuneError, match="does not exist"):
        check_training_file(tmp_path / "missing.jsonl")


class FakeOpenAI:
    """OpenAI's files and fine-tuning endpoints on loopback, in the API's own shapes, checking the key."""

    def __init__(self, server: HTTPServer, key: str, outcome: str = "succeeded"):
        self.server, self.key, self.outcome = server, key, outcome
        self.files: dict[str, bytes] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.polls = 0
        server.expect_request(re.compile(r"/v1/.*")).respond_with_handler(self.handle)

    @property
    def base(self) -> str:
        return self.server.url_for("/v1")

    def handle(self, request: Request) -> Response:
        if request.headers.get("Authorization") != f"Bearer {self.key}":
            return self.json({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}, 401)
        if request.path == "/v1/files" and request.method == "POST":
            upload = request.files["file"]
            file_id = f"file-{len(self.files) + 1}"
            self.files[file_id] = upload.read()
            return self.json(
                {
                    "id": file_id,
                    "object": "file",
                    "bytes": len(self.files[file_id]),
                    "created_at": 1_760_000_000,
                    "filename": upload.filename,
                    "purpose": request.form["purpose"],
                    "status": "processed",
                }
            )
        if request.path == "/v1/fine_tuning/jobs" and request.method == "POST":
            body = json.loads(request.data)
            if body["training_file"] not in self.files:
                return self.json({"error": {"message": "file not found", "type": "invalid_request_error"}}, 400)
            job_id = f"ftjob-{len(self.jobs) + 1}"
            self.jobs[job_id] = {**body, "id": job_id}
            return self.json(self.job(job_id, "validating_files"))
        match = re.fullmatch(r"/v1/fine_tuning/jobs/([\w-]+)", request.path)
        if match and request.method == "GET" and match.group(1) in self.jobs:
            self.polls += 1
            return self.json(self.job(match.group(1), "running" if self.polls < 2 else self.outcome))
        return self.json({"error": {"message": "not found", "type": "invalid_request_error"}}, 404)

    def job(self, job_id: str, status: str) -> dict[str, Any]:
        body = self.jobs[job_id]
        done = status == "succeeded"
        return {
            "id": job_id,
            "object": "fine_tuning.job",
            "created_at": 1_760_000_000,
            "finished_at": 1_760_003_600 if status in ("succeeded", "failed") else None,
            "model": body["model"],
            "fine_tuned_model": f"ft:{body['model']}:acme:{body.get('suffix')}:AbC123" if done else None,
            "organization_id": "org-loopback",
            "result_files": [],
            "status": status,
            "validation_file": None,
            "training_file": body["training_file"],
            "hyperparameters": {"n_epochs": "auto", "batch_size": "auto", "learning_rate_multiplier": "auto"},
            "trained_tokens": 1234 if done else None,
            "seed": 7,
            "error": {"code": "invalid_file", "message": "bad rows", "param": None} if status == "failed" else None,
        }

    @staticmethod
    def json(body: Any, status: int = 200) -> Response:
        return Response(json.dumps(body), status=status, content_type="application/json")


KEY = "sk-loopback-test-key-0123456789"


@pytest.fixture
def training_file(tmp_path: Path) -> Path:
    path = tmp_path / "train.jsonl"
    example = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    path.write_text(json.dumps(example) + "\n" + json.dumps(example) + "\n")
    return path


def test_submit_status_and_register_through_litellm_against_the_loopback_api(
    httpserver: HTTPServer, training_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FT_TEST_KEY", KEY)
    fake = FakeOpenAI(httpserver, KEY)
    provider = Provider(key_env="FT_TEST_KEY", api_base=fake.base)
    job = submit_job(training_file, "gpt-4o-mini-2024-07-18", "acme", provider)
    assert job.status == "validating_files" and job.job_id == "ftjob-1"
    assert fake.files["file-1"] == training_file.read_bytes()
    assert fake.jobs["ftjob-1"]["model"] == "gpt-4o-mini-2024-07-18" and fake.jobs["ftjob-1"]["suffix"] == "acme"
    assert job_status("ftjob-1", provider).status == "running"
    done = job_status("ftjob-1", provider)
    assert done.fine_tuned_model == "ft:gpt-4o-mini-2024-07-18:acme:acme:AbC123"

    config_dir = tmp_path / "config"
    shutil.copytree(EXAMPLE_CONFIG, config_dir)
    before = (config_dir / "models.yaml").read_text()
    deployment = register_model(config_dir, "acme", done, provider, model_name="acme-analyst")
    after = (config_dir / "models.yaml").read_text()
    assert after.startswith(before.rstrip("\n")) and KEY not in after  # comments kept; the key only by reference
    loaded = load_config_dir(config_dir)
    assert loaded.ok, loaded.issues
    entry = next(e for e in loaded.config.models.model_list if e.model_info.id == deployment)
    assert entry.model_name == "acme-analyst" and entry.model_info.tenant == "acme"
    assert entry.litellm_params.model == "openai/ft:gpt-4o-mini-2024-07-18:acme:acme:AbC123"
    assert entry.litellm_params.api_key == "${FT_TEST_KEY}" and entry.model_info.regions == ["us"]
    assert entry.model_info.base_model == "ft:gpt-4o-mini-2024-07-18"  # priced as the fine-tuned variant
    assert register_model(config_dir, "acme", done, provider) == deployment  # idempotent
    assert (config_dir / "models.yaml").read_text() == after


def test_submit_failures_are_clear_and_never_show_the_key(
    httpserver: HTTPServer, training_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeOpenAI(httpserver, KEY)
    monkeypatch.delenv("FT_TEST_KEY", raising=False)
    with pytest.raises(FineTuneError, match="no provider key is configured: set FT_TEST_KEY"):
        submit_job(training_file, "gpt-4o-mini", "acme", Provider(key_env="FT_TEST_KEY", api_base=fake.base))
    monkeypatch.setenv("FT_TEST_KEY", "sk-wrong-key-0000000000000000")
    with pytest.raises(FineTuneError) as refused:
        submit_job(training_file, "gpt-4o-mini", "acme", Provider(key_env="FT_TEST_KEY", api_base=fake.base))
    assert "refused" in str(refused.value) and "sk-wrong-key" not in str(refused.value)
    assert fake.files == {}
    config_dir = tmp_path / "config"
    shutil.copytree(EXAMPLE_CONFIG, config_dir)
    from agents.finetune import Job

    running = Job("ftjob-9", "running", "gpt-4o-mini", None)
    with pytest.raises(FineTuneError, match="only a succeeded job has a model"):
        register_model(config_dir, "acme", running, Provider())
    unknown = Job("ftjob-9", "succeeded", "gpt-4o-mini", "ft:gpt-4o-mini:x::1")
    with pytest.raises(FineTuneError, match="tenant 'nobody' is not in the config"):
        register_model(config_dir, "nobody", unknown, Provider())


# --- the CLI ------------------------------------------------------------------------------------------

runner = CliRunner()


@pytest.fixture
def cli_store(state_env: Path, monkeypatch: pytest.MonkeyPatch) -> Engine:
    engine = open_store(f"sqlite:///{state_env / 'ops.db'}")
    seed_runs(engine)
    with transaction(session_factory(engine)) as session:
        for user, role, tenant in (
            ("admin@acme.example", "tenant_admin", "acme"),
            ("analyst@acme.example", "analyst", "acme"),
            ("admin@globex.example", "tenant_admin", "globex"),
        ):
            session.add(m.User(user_id=user, tenant_id=tenant, name=user, role=role, config_version=1))
    return engine


def audit_rows(engine: Engine, action: str) -> list[m.AuditRecord]:
    with transaction(session_factory(engine)) as session:
        rows = list(session.scalars(select(m.AuditRecord).where(m.AuditRecord.action == action)))
        session.expunge_all()
    return rows


def test_cli_export_is_permission_checked_and_audited(
    cli_store: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "export" / "acme.jsonl"
    for actor in ("analyst@acme.example", "admin@globex.example", "stranger@x.example"):
        monkeypatch.setenv("AGENTPROVISION_ACTOR", actor)
        refused = runner.invoke(app, ["finetune", "export", "--tenant", "acme", "--out", str(out)])
        assert refused.exit_code == 1 and refused.output.startswith("error:"), refused.output
        assert "Traceback" not in refused.output
    assert not out.exists()
    assert [r.outcome for r in audit_rows(cli_store, "data.exported")] == ["denied"] * 3

    monkeypatch.setenv("AGENTPROVISION_ACTOR", "admin@acme.example")
    done = runner.invoke(app, ["finetune", "export", "--tenant", "acme", "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert "2 training examples from 5 succeeded runs of acme" in done.output
    record = audit_rows(cli_store, "data.exported")[-1]
    assert record.outcome == "success" and record.tenant_id == "acme" and record.source == "cli"
    assert record.details["examples"] == 2 and record.details["masked"] == {"api_key": 1, "email": 2, "phone": 1}
    assert len(read_jsonl(out)) == 2
    bad = runner.invoke(app, ["finetune", "export", "--tenant", "acme", "--out", str(out), "--since", "soon"])
    assert bad.exit_code == 1 and "--since 'soon' is not a date" in bad.output


def test_cli_submit_waits_registers_the_model_and_status_is_tenant_checked(
    cli_store: Engine,
    httpserver: HTTPServer,
    training_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FT_TEST_KEY", KEY)
    fake = FakeOpenAI(httpserver, KEY)
    config_dir = tmp_path / "config"
    shutil.copytree(EXAMPLE_CONFIG, config_dir)
    common = ["--key-env", "FT_TEST_KEY", "--api-base", fake.base, "--config-dir", str(config_dir)]
    monkeypatch.setenv("AGENTPROVISION_ACTOR", "admin@acme.example")
    result = runner.invoke(
        app,
        ["finetune", "submit", "--tenant", "acme", "--file", str(training_file), "--base-model", "gpt-4o-mini"]
        + common
        + ["--wait", "30", "--poll", "0.05"],
    )
    assert result.exit_code == 0, result.output
    assert "fine-tuning job ftjob-1 for acme is validating_files" in result.output
    assert "registered for acme as deployment acme-ft-" in result.output
    assert load_config_dir(config_dir).ok
    submitted = audit_rows(cli_store, "finetune.submitted")
    assert [(r.target_id, r.tenant_id) for r in submitted] == [("ftjob-1", "acme")]
    assert audit_rows(cli_store, "finetune.registered")[0].details["fine_tuned_model"].startswith("ft:gpt-4o-mini")

    # Another tenant's admin cannot look at (or register) acme's job, even by naming it under their tenant.
    monkeypatch.setenv("AGENTPROVISION_ACTOR", "admin@globex.example")
    other = runner.invoke(app, ["finetune", "status", "--tenant", "globex", "--job", "ftjob-1"] + common)
    assert other.exit_code == 1 and "was not submitted for tenant globex" in other.output
    again = runner.invoke(app, ["finetune", "status", "--tenant", "acme", "--job", "ftjob-1"] + common)
    assert again.exit_code == 1 and "may not agent.manage on tenant acme" in again.output


def test_cli_reports_a_failed_job_and_a_missing_key(
    cli_store: Engine, httpserver: HTTPServer, training_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeOpenAI(httpserver, KEY, outcome="failed")
    monkeypatch.setenv("AGENTPROVISION_ACTOR", "admin@acme.example")
    args = ["finetune", "submit", "--tenant", "acme", "--file", str(training_file), "--base-model", "gpt-4o-mini"]
    args += ["--key-env", "FT_TEST_KEY", "--api-base", fake.base]
    monkeypatch.delenv("FT_TEST_KEY", raising=False)
    missing = runner.invoke(app, args)
    assert missing.exit_code == 1 and "no provider key is configured: set FT_TEST_KEY" in missing.output
    monkeypatch.setenv("FT_TEST_KEY", KEY)
    failed = runner.invoke(app, [*args, "--wait", "30", "--poll", "0.05"])
    assert failed.exit_code == 1 and "fine-tuning job ftjob-1 failed: bad rows" in failed.output
    queued = runner.invoke(app, args)
    assert queued.exit_code == 0 and "check again with `agentprovision finetune status --tenant acme" in queued.output
