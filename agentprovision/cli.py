"""The `agentprovision` command line: how admins validate, apply and roll back config.

Every expected failure (bad config, unreachable store, unknown version) ends in a plain message
and a non-zero exit code; a Python traceback reaching an admin is a bug.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.exc import SQLAlchemyError

from agentprovision import apply as config_apply
from agentprovision.config import ConfigIssue, load_config_dir
from agentprovision.report_cli import invoices_app, report_app
from agentprovision.settings import Settings, current_actor, load_settings
from agentprovision.store.db import open_store, session_factory, transaction
from agents.cli import agents_app, approvals_app, task_app
from agents.finetune_cli import finetune_app
from connectors.cli import connectors_app, webhooks_app
from governance.access import check_cli
from governance.cli import audit_app, compliance_app, privacy_app, retention_app, secrets_app
from governance.permissions import Action, PermissionDenied

EXIT_INVALID = 2
EXIT_FAILED = 1

app = typer.Typer(
    help="Deploy, govern and pay for AI agents across tenants.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
config_app = typer.Typer(help="Config versions: history and rollback.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(connectors_app, name="connectors")
app.add_typer(webhooks_app, name="webhooks")
app.add_typer(secrets_app, name="secrets")
app.add_typer(audit_app, name="audit")
app.add_typer(compliance_app, name="compliance")
app.add_typer(privacy_app, name="privacy")
app.add_typer(retention_app, name="retention")
app.add_typer(report_app, name="report")
app.add_typer(invoices_app, name="invoices")
app.add_typer(finetune_app, name="finetune")
app.add_typer(task_app, name="task")
app.add_typer(approvals_app, name="approvals")
app.add_typer(agents_app, name="agents")

ConfigDir = Annotated[
    Path | None, typer.Argument(help="Config directory (default: $AGENTPROVISION_CONFIG_DIR or ./config).")
]


class CliError(Exception):
    """An expected failure with a message for the user and an exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILED):
        super().__init__(message)
        self.code = code


def _settings() -> Settings:
    try:
        return load_settings()
    except ValueError as exc:
        raise CliError(str(exc)) from exc


def _open_store(settings: Settings):  # type: ignore[no-untyped-def]
    engine = open_store(*settings.store_urls)
    return engine, session_factory(engine)


def _check(factory, actor: str, action: Action, *, bootstrap: bool = False) -> None:  # type: ignore[no-untyped-def]
    """The permission matrix for admin commands (bootstrap and operator rules: governance/access.py)."""
    try:
        check_cli(factory, actor, action, None, bootstrap=bootstrap)
    except PermissionDenied as exc:
        raise CliError(str(exc)) from exc


def _print_issues(issues: list[ConfigIssue]) -> None:
    for issue in issues:
        typer.echo(issue.render(), err=True)
    noun = "problem" if len(issues) == 1 else "problems"
    typer.echo(f"\n{len(issues)} {noun} found; nothing was changed.", err=True)


def _load_valid(directory: Path | None, settings: Settings):  # type: ignore[no-untyped-def]
    directory = directory or settings.config_dir
    result = load_config_dir(directory)
    if not result.ok:
        _print_issues(result.issues)
        raise typer.Exit(EXIT_INVALID)
    return directory, result.config


@app.command()
def validate(directory: ConfigDir = None) -> None:
    """Check a config directory; print every problem with its file, line and column."""
    settings = _settings()
    directory, config = _load_valid(directory, settings)
    agents = sum(len(t.agents) for t in config.tenants)
    typer.echo(
        f"{directory}: valid ({len(config.tenants)} tenants, {agents} agents, "
        f"{len(config.models.model_list)} model deployments)"
    )


@app.command("apply")
def apply_command(
    directory: ConfigDir = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the diff without writing anything.")] = False,
    actor: Annotated[
        str | None, typer.Option(help="Who is applying (default: $AGENTPROVISION_ACTOR or the OS user).")
    ] = None,
) -> None:
    """Validate, show the diff against the ops store, and write a new config version."""
    settings = _settings()
    directory, config = _load_valid(directory, settings)
    _, factory = _open_store(settings)
    if not dry_run:
        _check(factory, actor or current_actor(), Action.CONFIG_APPLY, bootstrap=True)
    with transaction(factory) as session:
        if dry_run:
            changes = config_apply.plan(session, config)
            _print_changes(changes)
            typer.echo("dry run: nothing written" if changes else "no changes")
            return
        result = config_apply.apply_config(session, config, actor=actor or current_actor(), source=str(directory))
    _print_changes(result.changes)
    if result.changed:
        typer.echo(f"applied as config version {result.version}")
    else:
        typer.echo("no changes: the ops store already holds this config")


def _print_changes(changes: list[config_apply.EntityChange]) -> None:
    for change in changes:
        typer.echo(change.render())


@config_app.command("history")
def config_history() -> None:
    """List every applied config version, newest last."""
    _, factory = _open_store(_settings())
    _check(factory, current_actor(), Action.CONFIG_HISTORY)
    with transaction(factory) as session:
        versions = config_apply.history(session)
    if not versions:
        typer.echo("no config applied yet: run `agentprovision apply`")
        return
    for row in versions:
        note = f" (rollback to {row.rollback_of})" if row.rollback_of else ""
        typer.echo(f"{row.version:>4}  {row.applied_at:%Y-%m-%d %H:%M:%S}  {row.applied_by:<24} {row.summary}{note}")


@config_app.command("rollback")
def config_rollback(
    version: Annotated[int, typer.Argument(help="The version to return to.")],
    actor: Annotated[str | None, typer.Option(help="Who is rolling back.")] = None,
) -> None:
    """Make an earlier version current again, as a new version (history is never rewritten)."""
    _, factory = _open_store(_settings())
    _check(factory, actor or current_actor(), Action.CONFIG_ROLLBACK)
    with transaction(factory) as session:
        config = config_apply.load_version(session, version)
        if config is None:
            known = [v.version for v in config_apply.history(session)]
            raise CliError(f"config version {version} does not exist; known versions: {known or 'none'}")
        result = config_apply.apply_config(
            session, config, actor=actor or current_actor(), source=f"rollback:{version}", rollback_of=version
        )
    _print_changes(result.changes)
    if result.changed:
        typer.echo(f"rolled back to version {version} as config version {result.version}")
    else:
        typer.echo(f"no changes: version {version} is already what the ops store holds")


@app.command()
def demo(
    once: Annotated[bool, typer.Option("--once", help="Run one full pass and exit.")] = False,
    interval: Annotated[int, typer.Option(help="Seconds between passes when not --once.")] = 300,
) -> None:
    """Seed the embedded default from the example config and run the whole pipeline."""
    # The pipeline is Dagster's; the kernel hands over to it here rather than importing Dagster.
    pipeline = importlib.import_module("orchestration.demo")
    pipeline.run(_settings(), once=once, interval=interval)


@app.command()
def serve(
    dagster_port: Annotated[int, typer.Option(help="Dagster UI port.")] = 3000,
    dashboards_port: Annotated[int, typer.Option(help="Streamlit port.")] = 8501,
) -> None:
    """Serve the Dagster UI and the dashboards in the foreground; Ctrl-C stops both."""
    from agentprovision.serve import serve_all

    raise typer.Exit(serve_all(_settings(), dagster_port=dagster_port, dashboards_port=dashboards_port))


def main() -> None:
    try:
        app()
    except CliError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.code)
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        typer.echo(
            f"error: the ops store could not be used: {reason}\n"
            "check AGENTPROVISION_DATABASE_URL and that the database is running; nothing was changed.",
            err=True,
        )
        sys.exit(EXIT_FAILED)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
