"""The errors a connector may raise, each saying which integration failed and what to fix.

Connectors raise these instead of library exceptions so that the CLI, the sync history and the
Dagster assets can show one clear line to an admin. Messages never contain secret values: the
HTTP client and the sync engine build them from status codes, paths and settings names only,
and `redact()` scrubs any resolved secret that still slipped into text from elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterable


class ConnectorError(Exception):
    """An expected failure of an integration. `integration` is "tenant/integration" once known."""

    #: what to fix, appended to the message; subclasses give a default
    hint: str = ""

    def __init__(self, message: str, *, hint: str | None = None, integration: str | None = None):
        super().__init__(message)
        self.message = message
        if hint is not None:
            self.hint = hint
        self.integration = integration

    def for_integration(self, integration: str) -> ConnectorError:
        if self.integration is None:
            self.integration = integration
        return self

    def __str__(self) -> str:
        where = f"integration {self.integration}: " if self.integration else ""
        hint = f"; {self.hint}" if self.hint else ""
        return f"{where}{self.message}{hint}"


class SettingsError(ConnectorError):
    hint = "fix the integration's settings in the tenant's config file"


class CredentialError(ConnectorError):
    hint = "set the environment variable or store the secret in the vault (`agentprovision secrets set`)"


class AuthError(ConnectorError):
    hint = "the credential was refused; check that it is current and belongs to this service"


class PermissionDenied(ConnectorError):
    hint = "the credential is valid but lacks permission; grant it access or use another credential"


class NotFound(ConnectorError):
    hint = "check base_url and the repository, project or channel named in the settings"


class RateLimited(ConnectorError):
    hint = "the service asked us to wait longer than allowed; the next scheduled sync will continue"


class Unreachable(ConnectorError):
    hint = "check base_url, DNS and that the service is up and reachable from this machine"


class ServiceError(ConnectorError):
    hint = "the service kept failing; retry later or check its status page"


class RequestRejected(ConnectorError):
    hint = "the service rejected the request; check the settings it names"


class MalformedResponse(ConnectorError):
    hint = "the service answered in an unexpected shape; check base_url points at the right API"


class HostNotAllowed(ConnectorError):
    hint = "add the host to the integration's allowed_hosts if it is meant to be reached"


class SchemaMismatch(ConnectorError):
    hint = "the source changed a field's type; update the stream's declared fields or fix the source"


class SyncConflict(ConnectorError):
    hint = "another sync of this integration is running; wait for it or let its lease expire"


class IntegrationNotFound(ConnectorError):
    hint = "check the tenant and integration ids, and run `agentprovision apply` after adding it to config"


class ActionError(ConnectorError):
    hint = "check the action name and its parameters"


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """Replace every occurrence of a secret value in `text`; short values are left alone to avoid noise."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text
