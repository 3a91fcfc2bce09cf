"""The built-in connector kinds, as plain data published through entry points (see pyproject.toml)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ConnectorKind:
    name: str
    description: str
    streams: tuple[str, ...]
    actions: tuple[str, ...] = ()


FILES = ConnectorKind("files", "CSV, JSON lines and Parquet files from a directory.", ("files",))
SQL = ConnectorKind("sql", "Any SQLAlchemy database, incremental on a cursor column.", ("tables",))
REST = ConnectorKind("rest", "A generic paginated REST API.", ("records",))
GITHUB = ConnectorKind("github", "GitHub issues and pull requests.", ("issues", "pull_requests"), ("create_issue",))
JIRA = ConnectorKind("jira", "Jira issues.", ("issues",), ("create_issue",))
SLACK = ConnectorKind("slack", "Slack channels.", ("messages",), ("post_message",))
DOCS = ConnectorKind("docs", "Markdown documentation feeding the knowledge base.", ("documents",))
