"""GitHub: issues and pull requests of one repository, and `create_issue` for agents.

Built on the REST helpers: Link-header pagination, `sort=updated&direction=asc` so each page can
commit its cursor, and `since` for issues (the pulls endpoint has no `since`, so older pulls are
dropped on our side). GitHub's issues endpoint also lists pull requests; they are left to the
pull_requests stream. Rate limits arrive as 403/429 with x-ratelimit-* headers or Retry-After,
which the HTTP client honours.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, Field

from connectors.http import BearerAuth, HttpClient
from connectors.rest import Pagination, max_cursor, not_before, paginate, stream_schema
from connectors.sdk import Action, Batch, Connector, ConnectorSettings, CredentialSpec, Stream, records_to_table

ISSUE_FIELDS = {
    "id": "integer",
    "number": "integer",
    "title": "string",
    "state": "string",
    "labels": "strings",
    "user": "string",
    "assignees": "strings",
    "html_url": "string",
    "body": "string",
    "created_at": "timestamp",
    "updated_at": "timestamp",
    "closed_at": "timestamp",
}
PULL_FIELDS = {
    **{k: v for k, v in ISSUE_FIELDS.items() if k not in ("assignees",)},
    "draft": "boolean",
    "merged_at": "timestamp",
    "head_ref": "string",
    "base_ref": "string",
}


class GithubSettings(ConnectorSettings):
    repository: str = Field(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", description="owner/name")
    base_url: str = Field(default="https://api.github.com", pattern=r"^https?://[^\s/]+")
    page_size: int = Field(default=100, ge=1, le=100)


class CreateIssue(BaseModel):
    title: str = Field(min_length=1, max_length=256)
    body: str = ""
    labels: list[str] = Field(default_factory=list)


def _flatten(item: dict[str, Any]) -> dict[str, Any]:
    record = {k: item.get(k) for k in ISSUE_FIELDS if k not in ("labels", "user", "assignees")}
    record["labels"] = [label.get("name") for label in item.get("labels") or [] if isinstance(label, dict)]
    record["user"] = (item.get("user") or {}).get("login")
    record["assignees"] = [a.get("login") for a in item.get("assignees") or [] if isinstance(a, dict)]
    for key in ("draft", "merged_at"):
        if key in item:
            record[key] = item[key]
    if "head" in item:
        record["head_ref"] = (item.get("head") or {}).get("ref")
        record["base_ref"] = (item.get("base") or {}).get("ref")
    return record


class GithubConnector(Connector):
    kind = "github"
    description = "GitHub issues and pull requests; create_issue."
    Settings = GithubSettings
    credential = CredentialSpec(required=True, description="a token with read access to the repository")

    settings: GithubSettings

    @classmethod
    def stream_names(cls, settings: GithubSettings) -> list[str]:  # type: ignore[override]
        return ["issues", "pull_requests"]

    @classmethod
    def hosts(cls, settings: GithubSettings) -> list[str]:  # type: ignore[override]
        return [settings.base_url]

    def client(self) -> HttpClient:
        return self.context.http(
            self.settings.base_url,
            auth=BearerAuth(self.context.secret or ""),
            headers={"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"},
        )

    def streams(self) -> list[Stream]:
        return [
            Stream("issues", ("id",), stream_schema(ISSUE_FIELDS, ["id"]), cursor_field="updated_at"),
            Stream("pull_requests", ("id",), stream_schema(PULL_FIELDS, ["id"]), cursor_field="updated_at"),
        ]

    def check(self) -> None:
        with self.client() as client:
            client.get_json(f"repos/{self.settings.repository}")

    def read(self, stream: Stream, cursor: dict[str, Any] | None) -> Iterator[Batch]:
        saved = (cursor or {}).get("value")
        params: dict[str, Any] = {"state": "all", "sort": "updated", "direction": "asc"}
        if stream.name == "issues":
            path = f"repos/{self.settings.repository}/issues"
            if saved:
                params["since"] = saved
        else:
            path = f"repos/{self.settings.repository}/pulls"
        pagination = Pagination(type="link", size_param="per_page", page_size=self.settings.page_size)
        best = saved
        with self.client() as client:
            pages = paginate(client, path, params=params, pagination=pagination, records_path="")
            for number, items in enumerate(pages, 1):
                if stream.name == "issues":
                    items = [i for i in items if "pull_request" not in i]
                rows = not_before([_flatten(i) for i in items], "updated_at", saved)
                best = max_cursor(best, rows, "updated_at")
                yield Batch(
                    records_to_table(stream, rows, where=f"page {number}"),
                    {"value": best} if best is not None else None,
                )

    def actions(self) -> dict[str, Action]:
        return {
            "create_issue": Action("create_issue", "Open an issue in the repository.", CreateIssue, self._create_issue)
        }

    def _create_issue(self, params: CreateIssue) -> dict[str, Any]:
        with self.client() as client:
            created = client.json_of(
                client.request("POST", f"repos/{self.settings.repository}/issues", json=params.model_dump())
            )
        return {"id": created.get("id"), "number": created.get("number"), "url": created.get("html_url")}
