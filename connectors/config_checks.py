"""Config-time checks of a tenant's integrations, run by `agentprovision validate` and `apply`.

Each installed connector validates its own settings; values written as references (`${VAR}`,
`secret://...`) are checked when the sync resolves them, not here. Also checked: a required
credential is present, every host the settings contact is on allowed_hosts, and every trigger
names a stream the integration actually has. Problems come back as (path, message) pairs that
the kernel's checks turn into file:line:column issues.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from agentprovision.config.schema import TenantFile, is_reference
from connectors.errors import ConnectorError
from connectors.http import host_allowed
from connectors.registry import connector_class

Problem = tuple[tuple[str | int, ...], str]


def connector_problems(tenant_file: TenantFile, known_kinds: frozenset[str]) -> list[Problem]:
    problems: list[Problem] = []
    streams_of: dict[str, list[str]] = {}
    for index, connector in enumerate(tenant_file.connectors):
        at: tuple[str | int, ...] = ("connectors", index)
        if connector.kind not in known_kinds:
            continue  # reported by the kernel's own check
        try:
            cls = connector_class(connector.kind)
        except ConnectorError as exc:
            problems.append(((*at, "kind"), str(exc)))
            continue
        try:
            settings = cls.Settings.model_validate(connector.settings)
        except ValidationError as exc:
            for error in exc.errors():
                if is_reference(error.get("input")):
                    continue
                message = "unknown setting" if error["type"] == "extra_forbidden" else error["msg"]
                problems.append(((*at, "settings", *error["loc"]), f"{message} (connector kind {connector.kind!r})"))
            continue
        if cls.credential.required and connector.credential is None:
            problems.append(
                (
                    (*at, "kind"),
                    f"kind {connector.kind!r} needs a credential ({cls.credential.description}); "
                    "add `credential: secret://name` or `credential: ${ENV_VAR}`",
                )
            )
        for url in _contacted(cls, settings):
            if not host_allowed(url, connector.allowed_hosts):
                problems.append(
                    (
                        (*at, "allowed_hosts") if connector.allowed_hosts else (*at, "settings"),
                        f"{url} is not covered by allowed_hosts {connector.allowed_hosts}; "
                        "add its host, or the integration will refuse to contact it",
                    )
                )
        streams_of[connector.id] = cls.stream_names(settings)
    for a_index, agent in enumerate(tenant_file.agents):
        for t_index, trigger in enumerate(agent.triggers):
            streams = streams_of.get(trigger.connector)
            if streams and trigger.stream not in streams:
                problems.append(
                    (
                        ("agents", a_index, "triggers", t_index, "stream"),
                        f"integration {trigger.connector!r} has no stream {trigger.stream!r}; "
                        f"its streams: {', '.join(streams)}",
                    )
                )
    return problems


def _contacted(cls: Any, settings: Any) -> list[str]:
    return [url for url in cls.hosts(settings) if isinstance(url, str) and not is_reference(url)]
