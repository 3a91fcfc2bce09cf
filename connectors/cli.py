"""`agentprovision connectors ...` and `agentprovision webhooks ...`.

Every expected failure prints one line naming the integration (or delivery) and what to fix, and
exits 1; nothing here lets a traceback reach an admin.

Commands that reach a service or change state (check, sync, webhook replay) hold the caller to the
permission matrix through `governance.access.check_cli`, the same rules as every administrative
command (configured users by role, bootstrap, the infrastructure operator); refusals are audited.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from sqlalchemy import Engine, select

from agentprovision.settings import Settings, current_actor, load_settings
from agentprovision.store.connector_models import WebhookDelivery
from agentprovision.store.db import open_store, session_factory, transaction
from connectors import kb, webhooks
from connectors.actions import check_integration
from connectors.credentials import SecretResolver, Vault
from connectors.errors import ConnectorError
from connectors.registry import connector_class, connector_kinds
from connectors.scaffold import scaffold
from connectors.sync import SyncOptions, history, run_sync, sync_all
from governance.access import check_cli
from governance.permissions import Action, PermissionDenied

EXIT_FAILED = 1

connectors_app = typer.Typer(
    help="Integrations: check, sync, history, search and new connectors.", no_args_is_help=True
)
webhooks_app = typer.Typer(help="Outbound webhooks: deliveries, dead letters and replay.", no_args_is_help=True)

F = TypeVar("F", bound=Callable[..., Any])


def expected_failures(command: F) -> F:
    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ConnectorError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(EXIT_FAILED) from None
        except ValueError as exc:  # settings from the environment
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(EXIT_FAILED) from None

    return wrapper  # type: ignore[return-value]


def _settings() -> Settings:
    return load_settings()


def _engine(settings: Settings) -> Engine:
    return open_store(*settings.store_urls)


def _vault(engine: Engine, settings: Settings) -> Vault | None:
    """The governance package's encrypted credential store, when it is installed and usable."""
    try:
        from governance.vault import CredentialVault, load_keyring
    except ImportError:
        return None
    try:
        return CredentialVault(engine, load_keyring(settings.state_dir))
    except Exception as exc:  # a broken keyring shows up as a clear error on the first secret:// lookup
        typer.echo(f"warning: the credential store is unavailable ({exc}); secret:// references will fail", err=True)
        return None


def _permitted(engine: Engine, actor: str, action: Action, tenant_id: str | None) -> None:
    """The caller may do `action` on the tenant (None: every tenant, a platform action), or exit 1.

    A refusal is already recorded as a denied audit record by check_cli when this exits."""
    try:
        check_cli(session_factory(engine), actor, action, tenant_id)
    except PermissionDenied as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from None


def _resolver(engine: Engine, settings: Settings) -> SecretResolver:
    return SecretResolver(_vault(engine, settings), actor=current_actor())


def _options(settings: Settings) -> SyncOptions:
    # Relative paths in integration settings (sample data, docs folders) resolve against the config directory.
    return SyncOptions(base_dir=settings.config_dir.resolve())


@connectors_app.command("list")
def list_kinds() -> None:
    """Installed connector kinds (entry-point group agentprovision.connectors)."""
    for kind in connector_kinds():
        try:
            cls = connector_class(kind)
            typer.echo(f"{kind:<10} {cls.description}")
        except ConnectorError as exc:
            typer.echo(f"{kind:<10} (broken: {exc})")


@connectors_app.command("scaffold")
@expected_failures
def scaffold_command(
    name: Annotated[str, typer.Argument(help="Connector kind, e.g. acme_crm.")],
    directory: Annotated[Path, typer.Option("--dir", help="Where to create the package.")] = Path("."),
) -> None:
    """Create a new connector package that passes the conformance kit as generated."""
    root = scaffold(name, directory)
    typer.echo(f"created {root}")
    typer.echo(f"next: cd {root} && uv pip install -e . && pytest tests")


@connectors_app.command("check")
@expected_failures
def check_command(
    tenant: Annotated[str, typer.Argument(help="Tenant id.")],
    integration: Annotated[str, typer.Argument(help="Integration id (the connector's id in config).")],
) -> None:
    """Validate an applied integration's settings and credential and reach its service (audited)."""
    settings = _settings()
    engine = _engine(settings)
    _permitted(engine, current_actor(), Action.INTEGRATION_MANAGE, tenant)
    streams = check_integration(
        engine,
        tenant,
        integration,
        actor=current_actor(),
        resolver=_resolver(engine, settings),
        options=_options(settings),
    )
    typer.echo(f"{tenant}/{integration}: ok (streams: {', '.join(streams) or 'none'})")


@connectors_app.command("sync")
@expected_failures
def sync_command(
    tenant: Annotated[str | None, typer.Argument(help="Tenant id; omit to sync every tenant.")] = None,
    integration: Annotated[str | None, typer.Argument(help="Integration id; omit for all of the tenant's.")] = None,
    local_only: Annotated[
        bool, typer.Option("--local-only", help="Only integrations that need no network (local files, SQLite).")
    ] = False,
) -> None:
    """Run one incremental sync of one integration, a tenant's, or all; exit 1 if any failed."""
    if integration is not None and tenant is None:
        raise ConnectorError("name the tenant too: `agentprovision connectors sync TENANT INTEGRATION`")
    settings = _settings()
    engine = _engine(settings)
    # Syncing every tenant is a platform action; a tenant's own integrations need the right in that tenant.
    _permitted(engine, current_actor(), Action.INTEGRATION_MANAGE, tenant)
    resolver = _resolver(engine, settings)
    options = _options(settings)
    if integration is not None:
        try:
            outcomes = [
                (tenant, integration, run_sync(engine, tenant, integration, resolver=resolver, options=options))
            ]
        except ConnectorError as exc:
            outcomes = [(tenant, integration, exc)]
    else:
        outcomes = sync_all(engine, tenant_id=tenant, local_only=local_only, resolver=resolver, options=options)
    if not outcomes:
        typer.echo("nothing to sync: no active integrations (run `agentprovision apply` first)")
        return
    failures = 0
    for tenant_id, integration_id, outcome in outcomes:
        if isinstance(outcome, ConnectorError):
            failures += 1
            typer.echo(f"{tenant_id}/{integration_id}: failed: {outcome}", err=True)
        else:
            typer.echo(outcome.summary())
    if failures:
        raise typer.Exit(EXIT_FAILED)


@connectors_app.command("history")
@expected_failures
def history_command(
    tenant: Annotated[str, typer.Argument(help="Tenant id.")],
    integration: Annotated[str, typer.Argument(help="Integration id.")],
    limit: Annotated[int, typer.Option(help="How many syncs to show.")] = 20,
) -> None:
    """Recent syncs of one integration, newest first."""
    runs = history(_engine(_settings()), tenant, integration, limit)
    if not runs:
        typer.echo(f"{tenant}/{integration}: no syncs yet")
    for run in runs:
        line = (
            f"{run.started_at:%Y-%m-%d %H:%M:%S}  {run.status:<9} {run.records_read:>6} read "
            f"{run.records_inserted:>6} new {run.records_updated:>6} changed {run.tasks_created:>4} tasks"
        )
        typer.echo(line + (f"  {run.error}" if run.error else ""))


@connectors_app.command("search")
@expected_failures
def search_command(
    tenant: Annotated[str, typer.Argument(help="Tenant id.")],
    query: Annotated[str, typer.Argument(help="Words to look for in the tenant's knowledge base.")],
    limit: Annotated[int, typer.Option(help="How many sections to show.")] = 5,
) -> None:
    """Search a tenant's knowledge base (what documentation integrations synced)."""
    hits = kb.search(_engine(_settings()), tenant, query, limit=limit)
    if not hits:
        typer.echo("no matches")
    for hit in hits:
        where = f"{hit.doc_id}" + (f" > {hit.heading}" if hit.heading else "")
        typer.echo(f"{hit.score:6.2f}  {where}\n        {hit.snippet}")


@webhooks_app.command("list")
@expected_failures
def webhooks_list(
    dead: Annotated[bool, typer.Option("--dead", help="Only dead letters not yet replayed.")] = False,
    limit: Annotated[int, typer.Option(help="How many deliveries to show.")] = 50,
) -> None:
    """Recent webhook deliveries, or the dead letters waiting for replay."""
    engine = _engine(_settings())
    if dead:
        letters = webhooks.dead_letters(engine)
        if not letters:
            typer.echo("no dead letters")
        for letter in letters:
            owner = letter.tenant_id or webhooks.PLATFORM
            typer.echo(
                f"{letter.delivery_id}  {owner}/{letter.channel_id}  {letter.attempts} attempts  {letter.reason}"
            )
        return
    with transaction(session_factory(engine)) as session:
        rows = list(session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.created_at.desc()).limit(limit)))
    if not rows:
        typer.echo("no webhook deliveries yet")
    for row in rows:
        owner = row.tenant_id or webhooks.PLATFORM
        typer.echo(
            f"{row.delivery_id}  {row.created_at:%Y-%m-%d %H:%M:%S}  {owner}/{row.channel_id}  {row.event:<16} "
            f"{row.status:<9} {row.attempts} attempts" + (f"  {row.last_error}" if row.last_error else "")
        )


def _delivery_owner(engine: Engine, delivery_id: str) -> str | None:
    """The tenant a delivery belongs to; None for a platform delivery, and for an unknown id, so that only a
    platform-wide caller learns that an id does not exist."""
    with transaction(session_factory(engine)) as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        return delivery.tenant_id if delivery is not None else None


@webhooks_app.command("replay")
@expected_failures
def webhooks_replay(
    delivery_id: Annotated[str, typer.Argument(help="The dead delivery's id (see `webhooks list --dead`).")],
    actor: Annotated[str | None, typer.Option(help="Who is replaying (default: $AGENTPROVISION_ACTOR).")] = None,
) -> None:
    """Deliver a dead letter again, as a new delivery linked to it; audited."""
    settings = _settings()
    engine = _engine(settings)
    actor = actor or current_actor()
    _permitted(engine, actor, Action.WEBHOOK_REPLAY, _delivery_owner(engine, delivery_id))
    delivery = webhooks.replay(engine, delivery_id, actor=actor, resolver=_resolver(engine, settings))
    if delivery.status == "delivered":
        typer.echo(f"replayed {delivery_id} as {delivery.delivery_id}: delivered")
        return
    typer.echo(
        f"error: replay {delivery.delivery_id} of {delivery_id} failed again: {delivery.last_error}; "
        "it is a dead letter again",
        err=True,
    )
    raise typer.Exit(EXIT_FAILED)
