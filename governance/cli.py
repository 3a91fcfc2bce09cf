"""`agentprovision secrets ...` and `agentprovision audit ...`: the governance commands."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from cryptography.fernet import Fernet

from agentprovision.config import load_config_dir
from agentprovision.settings import current_actor, load_settings
from agentprovision.store.audit import append_audit, latest_exported_heads, verify_chain
from agentprovision.store.db import open_store, session_factory, transaction
from agentprovision.store.models import Tenant, User
from governance.access import check_cli
from governance.evidence import EvidenceError, Period, build_sections, write_pack
from governance.permissions import Action, PermissionDenied, Principal, require
from governance.privacy import PrivacyError, erase_subject
from governance.retention import RetentionError, applied_config, apply_retention
from governance.vault import ENV_VAULT_KEYS, KEY_FILE_NAME, CredentialVault, VaultError, load_keyring, write_key_file

secrets_app = typer.Typer(help="Encrypted integration credentials.", no_args_is_help=True)
compliance_app = typer.Typer(help="Compliance evidence for auditors.", no_args_is_help=True)
HEADS_DIR = "audit_heads"  # under the state dir; the `audit_chain_heads` asset writes here
audit_app = typer.Typer(help="The tamper-evident audit trail.", no_args_is_help=True)


def _engine():  # type: ignore[no-untyped-def]
    return open_store(*load_settings().store_urls)


def _check(action: Action, tenant_id: str | None) -> None:
    """The permission matrix, with the bootstrap and operator rules of governance/access.py."""
    try:
        check_cli(session_factory(_engine()), current_actor(), action, tenant_id)
    except PermissionDenied as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _vault() -> CredentialVault:
    settings = load_settings()
    try:
        return CredentialVault(_engine(), load_keyring(settings.state_dir))
    except VaultError as exc:
        raise typer.BadParameter(str(exc)) from None


@secrets_app.command("set")
def set_secret(
    tenant: Annotated[str, typer.Argument(help="Tenant id.")],
    name: Annotated[str, typer.Argument(help="Secret name, as referenced by secret://NAME in config.")],
) -> None:
    """Store a secret; the value is read from standard input (never from the command line)."""
    _check(Action.SECRET_MANAGE, tenant)
    value = sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else typer.prompt("value", hide_input=True)
    try:
        _vault().store(tenant, name, value, actor=current_actor())
    except VaultError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"stored {tenant}/{name} (encrypted)")


@secrets_app.command("list")
def list_secrets(tenant: Annotated[str, typer.Argument(help="Tenant id.")]) -> None:
    """Names, key ids and last change of a tenant's secrets; never their values."""
    _check(Action.SECRET_MANAGE, tenant)
    rows = _vault().names(tenant)
    if not rows:
        typer.echo(f"tenant {tenant} has no stored secrets")
    for name, key, changed in rows:
        typer.echo(f"{name:<40} key {key}  changed {changed:%Y-%m-%d %H:%M}")


@secrets_app.command("new-key")
def new_key() -> None:
    """Print a fresh key to put first in AGENTPROVISION_VAULT_KEYS before `rotate-key`."""
    typer.echo(Fernet.generate_key().decode())


@secrets_app.command("rotate-key")
def rotate_key() -> None:
    """Re-encrypt every secret under the newest key.

    With AGENTPROVISION_VAULT_KEYS set: put the new key first, keep the old ones after it, run this,
    then drop the old keys. With the embedded key file: a new key is generated, used, and the old
    keys are removed from the file once every secret is re-encrypted.
    """
    settings = load_settings()
    engine = _engine()
    _check(Action.KEY_ROTATE, None)
    key_file = settings.state_dir / KEY_FILE_NAME
    try:
        keyring = load_keyring(settings.state_dir)
        if os.environ.get(ENV_VAULT_KEYS):
            count = CredentialVault(engine, keyring).rotate(actor=current_actor())
        else:
            fresh = Fernet.generate_key()
            write_key_file(key_file, (fresh, *keyring.keys))
            count = CredentialVault(engine, load_keyring(settings.state_dir)).rotate(actor=current_actor())
            write_key_file(key_file, (fresh,))
    except VaultError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"re-encrypted {count} secrets under the newest key")


@audit_app.command("verify")
def verify() -> None:
    """Check every audit chain; name the first record that does not verify."""
    _check(Action.AUDIT_VERIFY, None)
    anchors = latest_exported_heads(load_settings().state_dir / HEADS_DIR)
    with transaction(session_factory(_engine())) as session:
        result = verify_chain(session, anchors)
    if result.intact:
        anchored = " (tails checked against the last exported chain heads)" if anchors else ""
        typer.echo(f"audit trail intact: {result.records} records in {result.chains} chains{anchored}")
        return
    typer.echo(
        f"audit trail BROKEN in chain {result.chain!r} at record seq {result.first_bad_seq}: {result.problem}", err=True
    )
    raise typer.Exit(3)


def principal_for(session, user_id: str) -> Principal:  # type: ignore[no-untyped-def]
    """The acting user as configured in the ops store; unknown or removed users have no rights."""
    user = session.get(User, user_id)
    if user is None or user.status != "active":
        raise PermissionDenied(
            f"{user_id!r} is not an active user of the platform; set AGENTPROVISION_ACTOR to your user id"
        )
    return Principal(user.user_id, user.role, user.tenant_id)


@compliance_app.command("evidence")
def evidence(
    tenant: Annotated[str, typer.Option(help="Tenant id.")],
    period: Annotated[str, typer.Option(help="YYYY-Qn or YYYY-MM, e.g. 2026-Q3.")],
    out: Annotated[Path | None, typer.Option(help="Where to write the pack (default: <state dir>/evidence).")] = None,
) -> None:
    """Write an evidence pack (JSON, CSV, summary, SHA-256 manifest) for one tenant and period."""
    settings = load_settings()
    actor = current_actor()
    factory = session_factory(_engine())
    try:
        parsed = Period.parse(period)
        with transaction(factory) as session:
            require(principal_for(session, actor), Action.EVIDENCE_EXPORT, tenant)
            sections = build_sections(session, tenant, parsed)
            target = write_pack(sections, tenant, parsed, out or settings.state_dir / "evidence", actor)
            append_audit(
                session,
                actor=actor,
                action="evidence.export",
                target_type="evidence_pack",
                target_id=f"{tenant}/{period}",
                tenant_id=tenant,
                source="cli",
                details={"path": str(target), "findings": sum(len(s.findings) for s in sections)},
            )
    except PermissionDenied as exc:
        # The refusal is itself evidence: recorded in its own transaction, since the one above rolled back.
        with transaction(factory) as session:
            append_audit(
                session,
                actor=actor,
                action="evidence.export",
                target_type="evidence_pack",
                target_id=f"{tenant}/{period}",
                source="cli",
                outcome="denied",
                details={"reason": str(exc)},
            )
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except EvidenceError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    findings = sum(len(s.findings) for s in sections)
    typer.echo(f"evidence pack for {tenant} {period} written to {target} ({findings} findings)")


privacy_app = typer.Typer(help="Data-subject rights: erasure.", no_args_is_help=True)


def _denied(factory, actor: str, action: str, tenant: str | None, exc: Exception) -> None:  # type: ignore[no-untyped-def]
    """A refusal is itself an audit record, in its own transaction since the attempted one rolled back."""
    with transaction(factory) as session:
        append_audit(
            session,
            actor=actor,
            action=action,
            target_type="tenant",
            target_id=tenant or "platform",
            tenant_id=tenant,
            source="cli",
            outcome="denied",
            details={"reason": str(exc)},
        )
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(1)


@privacy_app.command("erase")
def privacy_erase(
    tenant: Annotated[str, typer.Option(help="Tenant the subject belongs to.")],
    subject: Annotated[str, typer.Option(help="The subject's e-mail address.")],
    also: Annotated[
        list[str] | None,
        typer.Option(help="Another form of the subject to erase (name, phone number...); repeat as needed."),
    ] = None,
) -> None:
    """Erase a data subject from the ops store, audit trail, warehouse and state files; print the proof."""
    settings = load_settings()
    engine = _engine()
    factory = session_factory(engine)
    actor = current_actor()
    try:
        with transaction(factory) as session:
            require(principal_for(session, actor), Action.PRIVACY_ERASE, tenant)
    except PermissionDenied as exc:
        _denied(factory, actor, "privacy.erase", tenant if _tenant_exists(factory, tenant) else None, exc)
    loaded = load_config_dir(settings.config_dir)
    try:
        report = erase_subject(
            loaded.config if loaded.ok else None, engine, settings, tenant, subject, actor, also=also or []
        )
    except PrivacyError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(report.render())
    if not report.complete:
        raise typer.Exit(4)


def _tenant_exists(factory, tenant_id: str) -> bool:  # type: ignore[no-untyped-def]
    with transaction(factory) as session:
        return session.get(Tenant, tenant_id) is not None


retention_app = typer.Typer(help="Retention: prune what has outlived each tenant's policy.", no_args_is_help=True)


@retention_app.command("apply")
def retention_apply(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant (default: every tenant).")] = None,
) -> None:
    """Enforce the retention policies of the applied config now (the scheduled asset does the same daily)."""
    settings = load_settings()
    engine = _engine()
    factory = session_factory(engine)
    actor = current_actor()
    try:
        with transaction(factory) as session:
            # A tenant admin may enforce the tenant's own policy; every tenant at once needs platform_admin.
            require(principal_for(session, actor), Action.RETENTION_APPLY, tenant)
    except PermissionDenied as exc:
        _denied(factory, actor, "retention.apply", tenant if tenant and _tenant_exists(factory, tenant) else None, exc)
    try:
        config = applied_config(engine)
    except RetentionError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if config is None:
        typer.echo("error: no config applied yet: run `agentprovision apply` first", err=True)
        raise typer.Exit(1)
    if tenant is not None and tenant not in {t.tenant.id for t in config.tenants}:
        typer.echo(f"error: tenant {tenant!r} is not in the applied config", err=True)
        raise typer.Exit(1)
    report = apply_retention(
        config, engine, warehouse=settings, tenants=[tenant] if tenant else None, actor=actor, source="cli"
    )
    typer.echo(report.render())
