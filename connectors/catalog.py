"""The built-in connector kinds. They are published through the entry-point group
`agentprovision.connectors` in pyproject.toml, exactly like third-party connectors, and looked up
through `connectors.registry`; this mapping exists for documentation and the conformance tests.
"""

from __future__ import annotations

from connectors.docs import DocsConnector
from connectors.files import FilesConnector
from connectors.github import GithubConnector
from connectors.jira import JiraConnector
from connectors.rest import RestConnector
from connectors.sdk import Connector
from connectors.slack import SlackConnector
from connectors.sql import SqlConnector

BUILT_IN: dict[str, type[Connector]] = {
    cls.kind: cls
    for cls in (
        FilesConnector,
        SqlConnector,
        RestConnector,
        GithubConnector,
        JiraConnector,
        SlackConnector,
        DocsConnector,
    )
}
