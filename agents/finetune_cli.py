"""`agentprovision finetune export|submit|status`: training data and fine-tuning jobs, per tenant.

Each command checks the caller (AGENTPROVISION_ACTOR) may manage agents of the tenant and leaves an
audit record; a refusal is audited too. Failures end in one line and a non-zero exit code.
"""

from __future__ import annotations

import hashlib
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from agentprovision.settings import current_actor, load_settings
from agentprovision.store.audit import append_audit
from agentprovision.store.db import open_store, session_factory, transaction
from agentprovision.store.models import AuditRecord
from governance.cli import principal_for
from governance.permissions import Action, PermissionDenied, require

if TYPE_CHECKING:
    from agents.finetune import Job, Provider

# agents.finetune is imported inside each command: it pulls in the gateway (and LiteLLM), which
# every other `agentprovision` command should not pay for at start-up.

finetune_app = typer.Typer(help="Fine-tuning: export curated training data, submit jobs.", no_args_is_help=True)

Tenant = Annotated[str, typer.Option("--tenant", help="Tenant id.")]
KeyEnv = Annotated[str, typer.Option("--key-env", help="Environment variable holding the provider key.")]
ApiBase = Annotated[str | None, typer.Option("--api-base", help="OpenAI-compatible API base (default: OpenAI).")]
ConfigDir = Annotated[
    Path | None, typer.Option("--config-dir", help="Config directory to register the model in (default: settings).")
]


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


def _authorised(engine: Engine, actor: str, tenant: str, action: str, target: str) -> None:
    """Refuse unless the actor may manage this tenant's agents; a refusal is itself audited."""
    factory = session_factory(engine)
    try:
        with transaction(factory) as session:
            require(principal_for(session, actor), Action.AGENT_MANAGE, tenant)
    except PermissionDenied as exc:
        with transaction(factory) as session:
            append_audit(
                session,
                actor=actor,
                action=action,
                target_type="training_data",
                target_id=target,
                tenant_id=tenant,
                source="cli",
                outcome="denied",
                details={"reason": str(exc)},
            )
        raise _fail(str(exc)) from None


def _audit(engine: Engine, actor: str, tenant: str, action: str, target_type: str, target: str, details: dict) -> None:
    with transaction(session_factory(engine)) as session:
        append_audit(
            session,
            actor=actor,
            action=action,
            target_type=target_type,
            target_id=target,
            tenant_id=tenant,
            source="cli",
            details=details,
        )


def _engine() -> Engine:
    try:
        return open_store(*load_settings().store_urls)
    except (SQLAlchemyError, ValueError) as exc:
        raise _fail(f"cannot open the ops store: {exc}") from None


@finetune_app.command("export")
def export(
    tenant: Tenant,
    out: Annotated[Path, typer.Option("--out", help="JSONL file to write.")],
    agent: Annotated[str | None, typer.Option("--agent", help="Only this agent's runs.")] = None,
    since: Annotated[str | None, typer.Option("--since", help="Only runs started on or after (YYYY-MM-DD).")] = None,
) -> None:
    """Write the tenant's succeeded (and approved) runs as OpenAI chat fine-tuning JSONL, personal data masked."""
    from agents.finetune import export_training_data

    engine, actor = _engine(), current_actor()
    _authorised(engine, actor, tenant, "data.exported", f"{tenant}/{out.name}")
    try:
        start = datetime.fromisoformat(since) if since else None
    except ValueError:
        raise _fail(f"--since {since!r} is not a date (YYYY-MM-DD)") from None
    try:
        report = export_training_data(engine, tenant, out, agent_id=agent, since=start)
    except OSError as exc:
        raise _fail(f"cannot write {out}: {exc.strerror or exc}") from None
    details = {
        "kind": "fine_tuning_training_data",
        "path": str(out),
        "sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
        "examples": report.examples,
        "runs_considered": report.runs_considered,
        "skipped": dict(report.skipped),
        "masked": dict(report.masked),
        "agent": agent,
        "since": since,
    }
    _audit(engine, actor, tenant, "data.exported", "training_data", f"{tenant}/{out.name}", details)
    typer.echo(report.summary())


@finetune_app.command("submit")
def submit(
    tenant: Tenant,
    file: Annotated[Path, typer.Option("--file", help="Training JSONL from `finetune export`.")],
    base_model: Annotated[str, typer.Option("--base-model", help="Provider model to fine-tune.")],
    key_env: KeyEnv = "OPENAI_API_KEY",
    api_base: ApiBase = None,
    wait: Annotated[int, typer.Option("--wait", help="Seconds to wait for the job to finish (0: do not).")] = 0,
    poll: Annotated[float, typer.Option("--poll", help="Seconds between status checks while waiting.")] = 30.0,
    model_name: Annotated[str | None, typer.Option("--model-name", help="model_name to register it under.")] = None,
    config_dir: ConfigDir = None,
) -> None:
    """Upload the file and start a fine-tuning job through LiteLLM; register the model once it succeeds."""
    from agents.finetune import TERMINAL_JOB_STATES, FineTuneError, Provider, job_status, submit_job

    engine, actor = _engine(), current_actor()
    _authorised(engine, actor, tenant, "finetune.submitted", f"{tenant}/{file.name}")
    provider = Provider(key_env=key_env, api_base=api_base)
    try:
        job = submit_job(file, base_model, tenant, provider)
    except FineTuneError as exc:
        raise _fail(str(exc)) from None
    details = {"base_model": base_model, "file": str(file), "sha256": hashlib.sha256(file.read_bytes()).hexdigest()}
    _audit(engine, actor, tenant, "finetune.submitted", "fine_tuning_job", job.job_id, details)
    typer.echo(f"fine-tuning job {job.job_id} for {tenant} is {job.status}")
    deadline = time.monotonic() + wait
    while job.status not in TERMINAL_JOB_STATES and time.monotonic() < deadline:
        time.sleep(min(poll, max(0.0, deadline - time.monotonic())))
        try:
            job = job_status(job.job_id, provider)
        except FineTuneError as exc:
            raise _fail(str(exc)) from None
    _finish(engine, actor, tenant, job, provider, model_name, config_dir)


@finetune_app.command("status")
def status(
    tenant: Tenant,
    job: Annotated[str, typer.Option("--job", help="Job id printed by `finetune submit`.")],
    key_env: KeyEnv = "OPENAI_API_KEY",
    api_base: ApiBase = None,
    model_name: Annotated[str | None, typer.Option("--model-name", help="model_name to register it under.")] = None,
    config_dir: ConfigDir = None,
) -> None:
    """Check a job submitted for this tenant; register its model when it has succeeded."""
    from agents.finetune import FineTuneError, Provider, job_status

    engine, actor = _engine(), current_actor()
    _authorised(engine, actor, tenant, "finetune.registered", job)
    with transaction(session_factory(engine)) as session:
        submitted = session.scalar(
            select(AuditRecord.record_id).where(
                AuditRecord.action == "finetune.submitted",
                AuditRecord.target_id == job,
                AuditRecord.tenant_id == tenant,
            )
        )
    if submitted is None:
        raise _fail(f"job {job} was not submitted for tenant {tenant}")
    provider = Provider(key_env=key_env, api_base=api_base)
    try:
        current = job_status(job, provider)
    except FineTuneError as exc:
        raise _fail(str(exc)) from None
    _finish(engine, actor, tenant, current, provider, model_name, config_dir)


def _finish(
    engine: Engine,
    actor: str,
    tenant: str,
    job: Job,
    provider: Provider,
    model_name: str | None,
    config_dir: Path | None,
) -> None:
    from agents.finetune import FineTuneError, register_model

    if job.status in ("failed", "cancelled"):
        raise _fail(f"fine-tuning job {job.job_id} {job.status}" + (f": {job.error}" if job.error else ""))
    if job.status != "succeeded":
        typer.echo(
            f"job {job.job_id} is {job.status}; check again with "
            f"`agentprovision finetune status --tenant {tenant} --job {job.job_id}`"
        )
        return
    directory = config_dir or load_settings().config_dir
    try:
        deployment = register_model(directory, tenant, job, provider, model_name=model_name)
    except FineTuneError as exc:
        raise _fail(str(exc)) from None
    details = {"fine_tuned_model": job.fine_tuned_model, "deployment_id": deployment, "config_dir": str(directory)}
    _audit(engine, actor, tenant, "finetune.registered", "fine_tuning_job", job.job_id, details)
    typer.echo(
        f"model {job.fine_tuned_model} registered for {tenant} as deployment {deployment} in "
        f"{directory / 'models.yaml'}; run `agentprovision apply` to deploy it"
    )
