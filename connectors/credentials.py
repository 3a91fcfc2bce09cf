"""Resolving credential references (`${ENV_VAR}` or `secret://name`) into values at the moment of use.

Config only ever holds references. `${VAR}` comes from the process environment; `secret://name`
comes from a `Vault`, an interface the governance package's encrypted credential store satisfies
(`governance.vault.CredentialVault.reveal`). Without a vault, a `secret://` reference fails with a
message that says how to provide it, never silently resolves to nothing.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from connectors.errors import CredentialError

ENV_REFERENCE = re.compile(r"^\$\{([A-Z_][A-Z0-9_]*)\}$")
VAULT_PREFIX = "secret://"


class Vault(Protocol):
    def reveal(self, tenant_id: str, name: str, *, actor: str, purpose: str) -> str: ...


class NoVault:
    """Used where no credential store is configured: every lookup fails with advice."""

    def reveal(self, tenant_id: str, name: str, *, actor: str, purpose: str) -> str:
        raise CredentialError(
            f"secret://{name} is not available: no credential store is configured for this process",
            hint=f"store it with `agentprovision secrets set {tenant_id} {name}`, or use ${{ENV_VAR}} instead",
        )


@dataclass
class MappingVault:
    """A vault over a plain mapping of (tenant, name) -> value; for tests and embedding."""

    values: dict[tuple[str, str], str] = field(default_factory=dict)

    def reveal(self, tenant_id: str, name: str, *, actor: str, purpose: str) -> str:
        try:
            return self.values[(tenant_id, name)]
        except KeyError:
            raise CredentialError(
                f"tenant {tenant_id} has no secret named {name!r}",
                hint=f"store it with `agentprovision secrets set {tenant_id} {name}`",
            ) from None


class SecretResolver:
    """Turns references into values for one tenant; remembers what it revealed so errors can be redacted."""

    def __init__(
        self,
        vault: Vault | None = None,
        environ: Mapping[str, str] | None = None,
        actor: str = "connectors",
    ):
        self._vault = vault or NoVault()
        self._environ = environ
        self._actor = actor
        self.revealed: set[str] = set()

    @property
    def environ(self) -> Mapping[str, str]:
        return os.environ if self._environ is None else self._environ

    def resolve(self, tenant_id: str, reference: str, *, purpose: str) -> str:
        """The value behind one reference; raises CredentialError naming the reference (never the value)."""
        match = ENV_REFERENCE.match(reference)
        if match:
            value = self.environ.get(match.group(1))
            if not value:
                raise CredentialError(f"environment variable {match.group(1)} (referenced as {reference}) is not set")
        elif reference.startswith(VAULT_PREFIX):
            name = reference.removeprefix(VAULT_PREFIX)
            try:
                value = self._vault.reveal(tenant_id, name, actor=self._actor, purpose=purpose)
            except CredentialError:
                raise
            except Exception as exc:  # the vault's own errors carry advice but are not ours to type
                raise CredentialError(f"{reference} could not be read: {exc}", hint="") from None
        else:
            raise CredentialError(f"{reference!r} is not a credential reference", hint="write ${VAR} or secret://name")
        self.revealed.add(value)
        return value

    def resolve_settings(self, tenant_id: str, settings: Any, *, purpose: str) -> Any:
        """Replace whole-value references inside settings (e.g. `url: ${WAREHOUSE_URL}`), recursively."""
        if isinstance(settings, dict):
            return {key: self.resolve_settings(tenant_id, value, purpose=purpose) for key, value in settings.items()}
        if isinstance(settings, list):
            return [self.resolve_settings(tenant_id, value, purpose=purpose) for value in settings]
        if isinstance(settings, str) and (ENV_REFERENCE.match(settings) or settings.startswith(VAULT_PREFIX)):
            return self.resolve(tenant_id, settings, purpose=purpose)
        return settings
