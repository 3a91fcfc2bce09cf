"""Encrypted credentials: round trip, rotation all-or-nothing, and the plaintext never stored."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from agentprovision.cli import app
from agentprovision.store import models as m
from agentprovision.store.db import make_engine, migrate, session_factory, transaction
from governance.vault import ENV_VAULT_KEYS, CredentialVault, Keyring, VaultError, load_keyring

CANARY = "canary-7f3a9c1e-do-not-store-in-clear"


def with_tenants(store: Engine) -> Engine:
    with transaction(session_factory(store)) as session:
        for tenant in ("acme", "globex"):
            session.add(
                m.Tenant(
                    tenant_id=tenant,
                    display_name=tenant,
                    region="us",
                    plan="business",
                    max_concurrent_runs=1,
                    budget_hard_usd=1,
                    config_version=1,
                )
            )
    return store


def keyring(*keys: bytes) -> Keyring:
    return Keyring(keys, "test")


def test_round_trip_and_nothing_in_clear(store: Engine) -> None:
    vault = CredentialVault(with_tenants(store), keyring(Fernet.generate_key()))
    vault.store("acme", "jira-token", CANARY, actor="admin@acme.example")
    assert vault.reveal("acme", "jira-token", actor="svc", purpose="sync acme-jira") == CANARY
    with pytest.raises(VaultError, match="tenant globex has no secret named 'jira-token'"):
        vault.reveal("globex", "jira-token", actor="svc", purpose="sync")

    with store.connect() as connection:
        ciphertexts = connection.execute(select(m.Credential.ciphertext)).scalars().all()
        audit = connection.execute(select(m.AuditRecord.action, m.AuditRecord.details)).all()
    assert all(CANARY.encode() not in bytes(c) for c in ciphertexts)
    assert [a for a, _ in audit] == ["secret.create", "credential.use"]
    assert CANARY not in repr(audit)


def test_the_sqlite_file_never_holds_the_plaintext(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'ops.db'}")
    migrate(engine)
    vault = CredentialVault(with_tenants(engine), keyring(Fernet.generate_key()))
    vault.store("acme", "token", CANARY, actor="a@example.com")
    vault.reveal("acme", "token", actor="svc", purpose="test")
    engine.dispose()
    for path in tmp_path.iterdir():  # database, WAL and shared-memory files alike
        assert CANARY.encode() not in path.read_bytes(), path.name


def test_rotation_is_all_or_nothing(store: Engine) -> None:
    old, new, stranger = Fernet.generate_key(), Fernet.generate_key(), Fernet.generate_key()
    with_tenants(store)
    CredentialVault(store, keyring(old)).store("acme", "a", "value-a", actor="x@example.com")
    CredentialVault(store, keyring(stranger)).store("globex", "b", "value-b", actor="x@example.com")

    with pytest.raises(VaultError, match="nothing was rotated"):
        CredentialVault(store, keyring(new, old)).rotate(actor="x@example.com")
    assert CredentialVault(store, keyring(old)).reveal("acme", "a", actor="t", purpose="t") == "value-a"

    assert CredentialVault(store, keyring(new, old, stranger)).rotate(actor="x@example.com") == 2
    only_new = CredentialVault(store, keyring(new))
    assert only_new.reveal("acme", "a", actor="t", purpose="t") == "value-a"
    assert only_new.reveal("globex", "b", actor="t", purpose="t") == "value-b"
    with pytest.raises(VaultError, match="not in test"):
        CredentialVault(store, keyring(old)).reveal("acme", "a", actor="t", purpose="t")


def test_embedded_key_file_is_owner_only_and_bad_keys_are_explained(tmp_path: Path) -> None:
    ring = load_keyring(tmp_path, environ={})
    mode = stat.S_IMODE((tmp_path / "vault.keys").stat().st_mode)
    assert mode == 0o600 and len(ring.keys) == 1
    assert load_keyring(tmp_path, environ={}).keys == ring.keys
    with pytest.raises(VaultError, match="key #2 in AGENTPROVISION_VAULT_KEYS is not a valid Fernet key"):
        load_keyring(tmp_path, environ={ENV_VAULT_KEYS: f"{Fernet.generate_key().decode()},nonsense"})


def test_secrets_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'ops.db'}"
    monkeypatch.setenv("AGENTPROVISION_DATABASE_URL", url)
    monkeypatch.setenv("AGENTPROVISION_STATE_DIR", str(tmp_path))
    monkeypatch.delenv(ENV_VAULT_KEYS, raising=False)
    engine = make_engine(url)
    migrate(engine)
    with_tenants(engine)
    runner = CliRunner()

    stored = runner.invoke(app, ["secrets", "set", "acme", "jira-token"], input=CANARY + "\n")
    assert stored.exit_code == 0 and CANARY not in stored.output
    listed = runner.invoke(app, ["secrets", "list", "acme"])
    assert "jira-token" in listed.output and CANARY not in listed.output

    key_before = (tmp_path / "vault.keys").read_text()
    rotated = runner.invoke(app, ["secrets", "rotate-key"])
    assert rotated.exit_code == 0 and "re-encrypted 1 secrets" in rotated.output
    key_after = (tmp_path / "vault.keys").read_text()
    assert key_after != key_before and len(key_after.split()) == 1
    vault = CredentialVault(engine, load_keyring(tmp_path, environ={}))
    assert vault.reveal("acme", "jira-token", actor="t", purpose="t") == CANARY
