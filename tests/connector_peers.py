"""Loopback fakes of the services the built-in connectors speak to, in the real APIs' shapes.

Each fake serves from an in-memory list through pytest-httpserver, checks the credential like
the real service does, and can be told to answer the next requests with a canned failure
(`fail_next`), which is how tests produce 429s, 500s and malformed bodies mid-stream.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

TOKEN = "tok-live-0123456789abcdef"
START = datetime(2024, 3, 1, tzinfo=UTC)


def stamp(n: int) -> str:
    return (START + timedelta(minutes=n)).strftime("%Y-%m-%dT%H:%M:%SZ")


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json", headers=headers)


class FakeService:
    def __init__(self, server: HTTPServer):
        self.server = server
        self.failures: list[Response] = []
        self.requests: list[Request] = []
        server.expect_request(re.compile(r".*")).respond_with_handler(self._handle)

    @property
    def base_url(self) -> str:
        return self.server.url_for("/").rstrip("/")

    def fail_next(self, *responses: Response) -> None:
        self.failures.extend(responses)

    def _handle(self, request: Request) -> Response:
        self.requests.append(request)
        if self.failures:
            return self.failures.pop(0)
        return self.handle(request)

    def handle(self, request: Request) -> Response:
        raise NotImplementedError


class FakeRest(FakeService):
    """GET /api/records?page=&per_page=&since= -> {"data": [...]}, ascending by updated_at; API key header."""

    def __init__(self, server: HTTPServer):
        super().__init__(server)
        self.records: list[dict[str, Any]] = []
        self.overrides: dict[int, dict[str, Any]] = {}  # page number -> extra fields for records on that page

    def add(self, count: int, **extra: Any) -> None:
        for _ in range(count):
            n = len(self.records) + 1
            self.records.append({"id": n, "title": f"record {n}", "updated_at": stamp(n), **extra})

    def handle(self, request: Request) -> Response:
        if request.headers.get("X-API-Key") != TOKEN:
            return json_response({"message": "invalid api key"}, 401)
        if request.path == "/api/forbidden":
            return json_response({"message": "no access"}, 403)
        if request.path != "/api/records":
            return json_response({"message": "no such path"}, 404)
        page, size = int(request.args.get("page", 1)), int(request.args.get("per_page", 100))
        since = request.args.get("since")
        records = [dict(r) for r in self.records if not since or r["updated_at"] >= since]
        chunk = records[(page - 1) * size : page * size]
        for record in chunk:
            record.update(self.overrides.get(page, {}))
        return json_response({"data": chunk})


class FakeGithub(FakeService):
    def __init__(self, server: HTTPServer, repository: str = "initech/tps-reports"):
        super().__init__(server)
        self.repository = repository
        self.issues: list[dict[str, Any]] = []
        self.pulls: list[dict[str, Any]] = []
        self.created: list[dict[str, Any]] = []

    def add_issues(self, count: int, labels: tuple[str, ...] = ()) -> None:
        for _ in range(count):
            n = len(self.issues) + len(self.pulls) + 1
            self.issues.append(self._item(n, labels))

    def add_pulls(self, count: int) -> None:
        for _ in range(count):
            n = len(self.issues) + len(self.pulls) + 1
            pull = self._item(n, ())
            pull.update({"draft": False, "merged_at": None, "head": {"ref": f"feature-{n}"}, "base": {"ref": "main"}})
            self.pulls.append(pull)

    def _item(self, n: int, labels: tuple[str, ...]) -> dict[str, Any]:
        return {
            "id": 1000 + n,
            "number": n,
            "title": f"Item {n}",
            "state": "open",
            "labels": [{"id": i, "name": name} for i, name in enumerate(labels)],
            "user": {"login": "milton"},
            "assignees": [],
            "html_url": f"https://github.example/{self.repository}/issues/{n}",
            "body": "details",
            "created_at": stamp(n),
            "updated_at": stamp(n),
            "closed_at": None,
        }

    def handle(self, request: Request) -> Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return json_response({"message": "Bad credentials"}, 401)
        prefix = f"/repos/{self.repository}"
        if request.path == prefix:
            return json_response({"full_name": self.repository})
        if request.path == f"{prefix}/issues" and request.method == "POST":
            body = json.loads(request.data)
            self.created.append(body)
            n = 900 + len(self.created)
            return json_response({"id": n, "number": n, "html_url": f"https://github.example/issues/{n}"}, 201)
        if request.path == f"{prefix}/issues":
            # GitHub lists pull requests among issues, marked with a pull_request key.
            items = self.issues + [{**p, "pull_request": {"url": "..."}} for p in self.pulls]
        elif request.path == f"{prefix}/pulls":
            items = list(self.pulls)
        else:
            return json_response({"message": "Not Found"}, 404)
        items.sort(key=lambda i: (i["updated_at"], i["id"]))
        since = request.args.get("since")
        if since and request.path.endswith("/issues"):
            items = [i for i in items if i["updated_at"] >= since]
        page, size = int(request.args.get("page", 1)), int(request.args.get("per_page", 30))
        chunk = items[(page - 1) * size : page * size]
        headers = {}
        if page * size < len(items):
            args = dict(request.args)
            args["page"] = str(page + 1)
            query = "&".join(f"{k}={v}" for k, v in args.items())
            headers["Link"] = f'<{self.base_url}{request.path}?{query}>; rel="next"'
        return json_response(chunk, headers=headers)


class FakeJira(FakeService):
    def __init__(self, server: HTTPServer, project: str = "ENG"):
        super().__init__(server)
        self.project = project
        self.issues: list[dict[str, Any]] = []
        self.created: list[dict[str, Any]] = []

    def add(self, count: int, labels: tuple[str, ...] = ()) -> None:
        for _ in range(count):
            n = len(self.issues) + 1
            updated = (START + timedelta(minutes=n)).strftime("%Y-%m-%dT%H:%M:%S.000+0000")
            self.issues.append(
                {
                    "id": str(10_000 + n),
                    "key": f"{self.project}-{n}",
                    "fields": {
                        "summary": f"Issue {n}",
                        "status": {"name": "To Do"},
                        "issuetype": {"name": "Bug"},
                        "priority": {"name": "Medium"},
                        "labels": list(labels),
                        "assignee": None,
                        "reporter": {"displayName": "Dana Reyes"},
                        "project": {"key": self.project},
                        "created": updated,
                        "updated": updated,
                    },
                }
            )

    def handle(self, request: Request) -> Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return json_response({"errorMessages": ["Client must be authenticated"]}, 401)
        if request.path == f"/rest/api/3/project/{self.project}":
            return json_response({"key": self.project})
        if request.path == "/rest/api/3/issue" and request.method == "POST":
            body = json.loads(request.data)
            self.created.append(body)
            n = len(self.created)
            return json_response({"id": str(90_000 + n), "key": f"{self.project}-9{n}", "self": "https://jira/x"}, 201)
        if request.path != "/rest/api/3/search/jql":
            return json_response({"errorMessages": ["not found"]}, 404)
        jql = request.args.get("jql", "")
        assert f'project = "{self.project}"' in jql and "ORDER BY updated ASC" in jql, jql
        size = int(request.args.get("maxResults", 50))
        start = int(request.args.get("nextPageToken") or 0)
        chunk = self.issues[start : start + size]
        body: dict[str, Any] = {"issues": chunk, "isLast": start + size >= len(self.issues)}
        if not body["isLast"]:
            body["nextPageToken"] = str(start + size)
        return json_response(body)


class FakeSlack(FakeService):
    def __init__(self, server: HTTPServer):
        super().__init__(server)
        self.channels = [{"id": "C0GENERAL1", "name": "general"}, {"id": "C0KPI00001", "name": "kpi"}]
        self.messages: list[dict[str, Any]] = []
        self.posted: list[dict[str, Any]] = []

    def add(self, count: int) -> None:
        for _ in range(count):
            n = len(self.messages) + 1
            self.messages.append(
                {"type": "message", "user": "U1", "text": f"kpi update {n}", "ts": f"{1709280000 + n}.000100"}
            )

    def handle(self, request: Request) -> Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return json_response({"ok": False, "error": "invalid_auth"})
        method = request.path.rsplit("/", 1)[-1]
        if method == "auth.test":
            return json_response({"ok": True, "team": "globex"})
        if method == "conversations.list":
            # Two pages, to exercise cursor pagination of the name lookup.
            if request.args.get("cursor") == "page2":
                return json_response(
                    {"ok": True, "channels": self.channels[1:], "response_metadata": {"next_cursor": ""}}
                )
            return json_response(
                {"ok": True, "channels": self.channels[:1], "response_metadata": {"next_cursor": "page2"}}
            )
        if method == "conversations.history":
            if request.args.get("channel") != "C0KPI00001":
                return json_response({"ok": False, "error": "channel_not_found"})
            oldest = request.args.get("oldest")
            items = [m for m in self.messages if not oldest or float(m["ts"]) > float(oldest)]
            items.sort(key=lambda m: float(m["ts"]), reverse=True)  # newest first, like Slack
            size = int(request.args.get("limit", 100))
            start = int(request.args.get("cursor") or 0)
            chunk = items[start : start + size]
            more = start + size < len(items)
            meta = {"next_cursor": str(start + size) if more else ""}
            return json_response({"ok": True, "messages": chunk, "has_more": more, "response_metadata": meta})
        if method == "chat.postMessage":
            body = json.loads(request.data)
            self.posted.append(body)
            return json_response({"ok": True, "channel": body["channel"], "ts": "1709999999.000100"})
        return json_response({"ok": False, "error": "unknown_method"})
