"""Finding connector classes by kind through the entry-point group `agentprovision.connectors`.

Built-ins register exactly like third-party packages (see pyproject.toml), so a custom connector
installed with `uv pip install -e ./my-connector` is found the same way.
"""

from __future__ import annotations

from agentprovision.plugins import CONNECTORS_GROUP, load_plugin, registered_names
from connectors.errors import SettingsError
from connectors.sdk import Connector


def connector_kinds() -> list[str]:
    return sorted(registered_names(CONNECTORS_GROUP))


def connector_class(kind: str) -> type[Connector]:
    """The class registered as `kind`; a SettingsError that lists the known kinds if there is none."""
    try:
        loaded = load_plugin(CONNECTORS_GROUP, kind)
    except LookupError:
        raise SettingsError(
            f"no connector kind {kind!r} is installed; installed kinds: {', '.join(connector_kinds()) or 'none'}",
            hint="install the package that provides it, or fix the kind",
        ) from None
    except Exception as exc:  # a broken plug-in must not take the caller down with a traceback
        raise SettingsError(
            f"the connector kind {kind!r} failed to load: {type(exc).__name__}: {exc}",
            hint="reinstall or fix the package that provides it",
        ) from None
    if not (isinstance(loaded, type) and issubclass(loaded, Connector)):
        raise SettingsError(
            f"the entry point {kind!r} in {CONNECTORS_GROUP} is not a Connector subclass",
            hint="point the entry point at the connector class",
        )
    return loaded
