"""The encrypted credential store: integration secrets at rest under Fernet, keys from outside the store.

Keys come from `AGENTPROVISION_VAULT_KEYS` (comma-separated Fernet keys, newest first). The embedded
default, where that variable is unset, keeps a generated key file readable only by its owner in the
state directory; production sets the variable from its own secret manager. Rotation re-encrypts
every credential under the newest key in one transaction, so a half-rotated store cannot exist.

Values never leave this module except through `reveal()`; nothing here logs, audits or raises with
a secret in it.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from agentprovision.store.audit import append_audit
from agentprovision.store.db import session_factory, transaction
from agentprovision.store.models import Credential

ENV_VAULT_KEYS = "AGENTPROVISION_VAULT_KEYS"
KEY_FILE_NAME = "vault.keys"


class VaultError(Exception):
    """An expected vault failure, with a message that says what to do."""


@dataclass(frozen=True)
class Keyring:
    keys: tuple[bytes, ...]  # newest first
    source: str

    @property
    def fernet(self) -> MultiFernet:
        return MultiFernet([Fernet(key) for key in self.keys])

    @property
    def primary_id(self) -> str:
        return key_id(self.keys[0])


def key_id(key: bytes) -> str:
    """A short, non-reversible name for a key, stored beside each ciphertext."""
    return hashlib.sha256(key).hexdigest()[:12]


def _parse_keys(text: str, source: str) -> Keyring:
    keys = tuple(part.strip().encode() for part in text.replace("\n", ",").split(",") if part.strip())
    if not keys:
        raise VaultError(f"{source} holds no keys; generate one with `agentprovision secrets new-key`")
    for index, key in enumerate(keys):
        try:
            Fernet(key)
        except ValueError:
            raise VaultError(
                f"key #{index + 1} in {source} is not a valid Fernet key (32 url-safe base64 bytes)"
            ) from None
    return Keyring(keys, source)


def load_keyring(state_dir: Path, environ: dict[str, str] | None = None) -> Keyring:
    env = os.environ if environ is None else environ
    if env.get(ENV_VAULT_KEYS):
        return _parse_keys(env[ENV_VAULT_KEYS], ENV_VAULT_KEYS)
    key_file = state_dir / KEY_FILE_NAME
    if not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True)
        # Created with owner-only permissions from the start, never widened.
        descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(Fernet.generate_key().decode() + "\n")
    return _parse_keys(key_file.read_text(), str(key_file))


def write_key_file(path: Path, keys: tuple[bytes, ...]) -> None:
    staging = path.with_suffix(".tmp")
    descriptor = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write("\n".join(key.decode() for key in keys) + "\n")
    os.replace(staging, path)


class CredentialVault:
    def __init__(self, engine: Engine, keyring: Keyring):
        self._factory = session_factory(engine)
        self._keyring = keyring

    def store(self, tenant_id: str, name: str, value: str, *, actor: str) -> None:
        if not value:
            raise VaultError(f"refusing to store an empty value for {tenant_id}/{name}")
        ciphertext = self._keyring.fernet.encrypt(value.encode())
        with transaction(self._factory) as session:
            row = self._row(session, tenant_id, name)
            if row is None:
                session.add(
                    Credential(
                        credential_id=str(uuid.uuid4()),
                        tenant_id=tenant_id,
                        name=name,
                        ciphertext=ciphertext,
                        key_id=self._keyring.primary_id,
                    )
                )
                action = "secret.create"
            else:
                row.ciphertext, row.key_id, row.rotated_at = ciphertext, self._keyring.primary_id, datetime.now(UTC)
                action = "secret.update"
            append_audit(
                session,
                actor=actor,
                action=action,
                target_type="credential",
                target_id=name,
                tenant_id=tenant_id,
                details={"key_id": self._keyring.primary_id},
            )

    def reveal(self, tenant_id: str, name: str, *, actor: str, purpose: str) -> str:
        """The plaintext, for immediate use; every use is an audit record (without the value)."""
        with transaction(self._factory) as session:
            row = self._row(session, tenant_id, name)
            if row is None:
                raise VaultError(
                    f"tenant {tenant_id} has no secret named {name!r}; "
                    f"store it with `agentprovision secrets set {tenant_id} {name}`"
                )
            try:
                plaintext = self._keyring.fernet.decrypt(row.ciphertext).decode()
            except InvalidToken:
                raise VaultError(
                    f"secret {tenant_id}/{name} was encrypted with key {row.key_id}, which is not in "
                    f"{self._keyring.source}; add that key back (after the newest) and retry"
                ) from None
            append_audit(
                session,
                actor=actor,
                action="credential.use",
                target_type="credential",
                target_id=name,
                tenant_id=tenant_id,
                details={"purpose": purpose},
            )
            return plaintext

    def names(self, tenant_id: str) -> list[tuple[str, str, datetime]]:
        with transaction(self._factory) as session:
            rows = session.scalars(
                select(Credential).where(Credential.tenant_id == tenant_id).order_by(Credential.name)
            )
            return [(row.name, row.key_id, row.rotated_at or row.created_at) for row in rows]

    def rotate(self, *, actor: str) -> int:
        """Re-encrypt every credential under the newest key; all or nothing."""
        fernet = self._keyring.fernet
        with transaction(self._factory) as session:
            rows = list(session.scalars(select(Credential)))
            for row in rows:
                try:
                    row.ciphertext = fernet.rotate(row.ciphertext)
                except InvalidToken:
                    raise VaultError(
                        f"secret {row.tenant_id}/{row.name} uses key {row.key_id}, which is not in "
                        f"{self._keyring.source}; nothing was rotated"
                    ) from None
                row.key_id, row.rotated_at = self._keyring.primary_id, datetime.now(UTC)
            append_audit(
                session,
                actor=actor,
                action="key.rotate",
                target_type="vault",
                target_id="credentials",
                details={"credentials": len(rows), "key_id": self._keyring.primary_id},
            )
            return len(rows)

    @staticmethod
    def _row(session: Session, tenant_id: str, name: str) -> Credential | None:
        return session.scalar(select(Credential).where(Credential.tenant_id == tenant_id, Credential.name == name))
