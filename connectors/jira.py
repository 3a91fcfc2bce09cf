"""Jira Cloud: issues of one project through the enhanced JQL search, and `create_issue` for agents.

`GET /rest/api/3/search/jql` pages with `nextPageToken` until `isLast`. JQL compares dates in the
calling user's time zone and only to the minute, so the query starts a day before the saved
cursor and exact filtering happens here; re-read issues are deduplicated by id. Results are
ordered by `updated ASC`, so every page commits its cursor.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from connectors.errors import MalformedResponse
from connectors.http import BasicAuth, BearerAuth, HttpClient
from connectors.rest import max_cursor, not_before, stream_schema
from connectors.sdk import (
    Action,
    Batch,
    Connector,
    ConnectorSettings,
    CredentialSpec,
    Stream,
    parse_timestamp,
    records_to_table,
)

ISSUE_FIELDS = {
    "id": "string",
    "key": "string",
    "project": "string",
    "summary": "string",
    "status": "string",
    "issue_type": "string",
    "priority": "string",
    "labels": "strings",
    "assignee": "string",
    "reporter": "string",
    "created": "timestamp",
    "updated": "timestamp",
}
REQUESTED = "summary,status,issuetype,priority,labels,assignee,reporter,created,updated,project"


class JiraSettings(ConnectorSettings):
    base_url: str = Field(pattern=r"^https?://[^\s/]+", description="e.g. https://acme.atlassian.net")
    project: str = Field(pattern=r"^[A-Z][A-Z0-9_]{0,30}$")
    auth: Literal["basic", "bearer"] = Field(
        default="bearer", description="basic: Jira Cloud email + API token; bearer: a personal access token"
    )
    email: str | None = None
    page_size: int = Field(default=100, ge=1, le=100)

    @model_validator(mode="after")
    def basic_needs_email(self) -> JiraSettings:
        if self.auth == "basic" and not self.email:
            raise ValueError("auth basic needs email (the credential is the API token)")
        return self


class CreateIssue(BaseModel):
    summary: str = Field(min_length=1, max_length=255)
    description: str = ""
    issue_type: str = "Task"
    labels: list[str] = Field(default_factory=list)


def _name(value: Any, key: str = "name") -> Any:
    return value.get(key) if isinstance(value, dict) else None


def _flatten(issue: dict[str, Any]) -> dict[str, Any]:
    fields = issue.get("fields")
    if not isinstance(fields, dict):
        raise MalformedResponse(f"Jira issue {issue.get('key', '?')} has no fields object")
    return {
        "id": issue.get("id"),
        "key": issue.get("key"),
        "project": _name(fields.get("project"), "key"),
        "summary": fields.get("summary"),
        "status": _name(fields.get("status")),
        "issue_type": _name(fields.get("issuetype")),
        "priority": _name(fields.get("priority")),
        "labels": fields.get("labels") or [],
        "assignee": _name(fields.get("assignee"), "displayName"),
        "reporter": _name(fields.get("reporter"), "displayName"),
        "created": fields.get("created"),
        "updated": fields.get("updated"),
    }


class JiraConnector(Connector):
    kind = "jira"
    description = "Jira issues; create_issue."
    Settings = JiraSettings
    credential = CredentialSpec(required=True, description="an API token (basic, with email) or personal token")

    settings: JiraSettings

    @classmethod
    def stream_names(cls, settings: JiraSettings) -> list[str]:  # type: ignore[override]
        return ["issues"]

    @classmethod
    def hosts(cls, settings: JiraSettings) -> list[str]:  # type: ignore[override]
        return [settings.base_url]

    def client(self) -> HttpClient:
        secret = self.context.secret or ""
        auth = BasicAuth(self.settings.email or "", secret) if self.settings.auth == "basic" else BearerAuth(secret)
        return self.context.http(self.settings.base_url, auth=auth, headers={"Accept": "application/json"})

    def streams(self) -> list[Stream]:
        return [Stream("issues", ("id",), stream_schema(ISSUE_FIELDS, ["id"]), cursor_field="updated")]

    def check(self) -> None:
        with self.client() as client:
            client.get_json(f"rest/api/3/project/{self.settings.project}")

    def jql(self, saved: Any) -> str:
        query = f'project = "{self.settings.project}"'
        if saved:
            since = parse_timestamp(saved) - timedelta(days=1)
            query += f' AND updated >= "{since:%Y-%m-%d %H:%M}"'
        return query + " ORDER BY updated ASC, key ASC"

    def read(self, stream: Stream, cursor: dict[str, Any] | None) -> Iterator[Batch]:
        saved = (cursor or {}).get("value")
        params: dict[str, Any] = {"jql": self.jql(saved), "maxResults": self.settings.page_size, "fields": REQUESTED}
        best = saved
        with self.client() as client:
            for number in range(1, 10_001):
                body = client.get_json("rest/api/3/search/jql", params=params)
                issues = body.get("issues") if isinstance(body, dict) else None
                if not isinstance(issues, list):
                    raise MalformedResponse(f"GET rest/api/3/search/jql page {number}: no issues list in the answer")
                rows = not_before([_flatten(i) for i in issues], "updated", saved)
                best = max_cursor(best, rows, "updated")
                yield Batch(
                    records_to_table(stream, rows, where=f"page {number}"),
                    {"value": best} if best is not None else None,
                )
                token = body.get("nextPageToken")
                if body.get("isLast", True) or not token:
                    return
                params["nextPageToken"] = token

    def actions(self) -> dict[str, Action]:
        return {"create_issue": Action("create_issue", "Create an issue in the project.", CreateIssue, self._create)}

    def _create(self, params: CreateIssue) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "project": {"key": self.settings.project},
            "summary": params.summary,
            "issuetype": {"name": params.issue_type},
            "labels": params.labels,
        }
        if params.description:
            # Jira Cloud v3 takes Atlassian Document Format; one paragraph of plain text.
            fields["description"] = {
                "type": "doc",
                "version": 1,
                "content": [{"type": "paragraph", "content": [{"type": "text", "text": params.description}]}],
            }
        with self.client() as client:
            created = client.json_of(client.request("POST", "rest/api/3/issue", json={"fields": fields}))
        return {"id": created.get("id"), "key": created.get("key"), "url": created.get("self")}
