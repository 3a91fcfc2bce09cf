"""The HTTP client and the SaaS connectors against loopback servers: limits, retries, refusals, actions."""

from __future__ import annotations

from typing import Any

import pytest
from connector_peers import TOKEN, FakeGithub, FakeJira, FakeRest, FakeSlack, json_response
from pytest_httpserver import HTTPServer
from werkzeug import Response

from connectors.errors import (
    AuthError,
    HostNotAllowed,
    MalformedResponse,
    NotFound,
    PermissionDenied,
    RateLimited,
    ServiceError,
    Unreachable,
)
from connectors.github import GithubConnector
from connectors.http import ApiKeyAuth, HttpClient, RetryPolicy
from connectors.jira import JiraConnector
from connectors.sdk import ConnectorContext
from connectors.slack import SlackConnector

FAST = RetryPolicy(max_attempts=3, backoff_base=0.01, backoff_max=0.02, max_retry_after=5, timeout=5)


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def client(fake: FakeRest, sleeps: Sleeps, key: str = TOKEN, **kwargs: Any) -> HttpClient:
    return HttpClient(
        integration="acme/api",
        base_url=fake.base_url + "/api",
        allowed_hosts=["127.0.0.1", "localhost"],
        auth=ApiKeyAuth(key),
        retry=kwargs.pop("retry", FAST),
        credential_ref="secret://acme/api-key",
        sleep=sleeps,
    )


@pytest.fixture
def fake(httpserver: HTTPServer) -> FakeRest:
    rest = FakeRest(httpserver)
    rest.add(3)
    return rest


def test_429_waits_for_retry_after_then_succeeds(fake: FakeRest) -> None:
    sleeps = Sleeps()
    fake.fail_next(json_response({"message": "slow down"}, 429, {"Retry-After": "2"}))
    body = client(fake, sleeps).get_json("records")
    assert len(body["data"]) == 3
    assert sleeps == [2.0] and len(fake.requests) == 2


def test_retry_after_beyond_the_cap_is_a_clear_rate_limit_error(fake: FakeRest) -> None:
    fake.fail_next(json_response({}, 429, {"Retry-After": "3600"}))
    with pytest.raises(RateLimited, match="rate limited for 3600s") as raised:
        client(fake, Sleeps()).get_json("records")
    assert str(raised.value).startswith("integration acme/api:")


def test_5xx_is_retried_with_backoff_and_gives_up_clearly(fake: FakeRest) -> None:
    sleeps = Sleeps()
    fake.fail_next(json_response({}, 502), json_response({}, 503))
    assert len(client(fake, sleeps).get_json("records")["data"]) == 3
    assert sleeps == [0.01, 0.02]
    fake.fail_next(*[json_response({}, 500)] * 3)
    with pytest.raises(ServiceError, match="answered 500 on all 3 attempts"):
        client(fake, Sleeps()).get_json("records")


@pytest.mark.parametrize(
    ("path", "key", "error", "text"),
    [
        ("records", "wrong-key", AuthError, "401 Unauthorized (credential secret://acme/api-key)"),
        ("forbidden", TOKEN, PermissionDenied, "403 Forbidden"),
        ("nothing-here", TOKEN, NotFound, "GET /api/nothing-here answered 404"),
    ],
)
def test_auth_and_missing_resources_are_named(fake: FakeRest, path: str, key: str, error: type, text: str) -> None:
    with pytest.raises(error) as raised:
        client(fake, Sleeps(), key=key).get_json(path)
    assert text in str(raised.value) and "wrong-key" not in str(raised.value) and TOKEN not in str(raised.value)
    assert len(fake.requests) == 1, "refusals are not retried"


def test_malformed_body_and_unreachable_host(fake: FakeRest) -> None:
    fake.fail_next(Response("<html>oops</html>", content_type="text/html"))
    with pytest.raises(MalformedResponse, match="not JSON"):
        client(fake, Sleeps()).get_json("records")
    absent = HttpClient(
        integration="acme/api",
        base_url="http://127.0.0.1:9",
        allowed_hosts=["127.0.0.1", "localhost"],
        retry=FAST,
        sleep=Sleeps(),
    )
    with pytest.raises(Unreachable, match="could not connect to 127.0.0.1"):
        absent.get_json("x")


def test_only_allowed_hosts_and_no_plain_http_beyond_loopback(fake: FakeRest) -> None:
    outside = HttpClient(integration="acme/api", base_url=fake.base_url, allowed_hosts=["api.example.com"])
    with pytest.raises(HostNotAllowed, match="'localhost' is not in allowed_hosts"):
        outside.get_json("api/records")
    plain = HttpClient(integration="acme/api", base_url="http://api.example.com", allowed_hosts=["api.example.com"])
    with pytest.raises(HostNotAllowed, match="credentials must travel over https"):
        plain.get_json("x")
    assert fake.requests == []


def context(**kwargs: Any) -> ConnectorContext:
    return ConnectorContext("acme", "svc", secret=TOKEN, allowed_hosts=("127.0.0.1", "localhost"), retry=FAST, **kwargs)


def test_github_pages_by_link_header_splits_issues_from_pulls_and_creates_issues(httpserver: HTTPServer) -> None:
    fake = FakeGithub(httpserver)
    fake.add_issues(3, labels=("bug",))
    fake.add_pulls(2)
    github = GithubConnector({"repository": fake.repository, "base_url": fake.base_url, "page_size": 2}, context())
    issues = [r for b in github.read(github.stream("issues"), None) for r in b.table().to_pylist()]
    pulls = [r for b in github.read(github.stream("pull_requests"), None) for r in b.table().to_pylist()]
    assert [i["number"] for i in issues] == [1, 2, 3] and issues[0]["labels"] == ["bug"]
    assert [p["head_ref"] for p in pulls] == ["feature-4", "feature-5"]
    assert sum(1 for r in fake.requests if r.path.endswith("/issues")) == 3  # 5 items, 2 per page, by Link
    out = github.run_action("create_issue", {"title": "Flaky test", "labels": ["qa"]})
    assert out["number"] == 901 and fake.created == [{"title": "Flaky test", "body": "", "labels": ["qa"]}]


def test_jira_pages_by_token_and_creates_issues(httpserver: HTTPServer) -> None:
    fake = FakeJira(httpserver)
    fake.add(5, labels=("qa",))
    jira = JiraConnector({"base_url": fake.base_url, "project": "ENG", "page_size": 2}, context())
    batches = list(jira.read(jira.stream("issues"), None))
    rows = [r for b in batches for r in b.table().to_pylist()]
    assert [r["key"] for r in rows] == [f"ENG-{n}" for n in range(1, 6)] and rows[0]["labels"] == ["qa"]
    assert batches[-1].cursor == {"value": "2024-03-01T00:05:00.000+0000"}
    again = list(jira.read(jira.stream("issues"), batches[-1].cursor))
    assert [r["key"] for b in again for r in b.table().to_pylist()] == [
        "ENG-5"
    ]  # only the boundary, deduplicated later
    created = jira.run_action("create_issue", {"summary": "Deploy failed", "description": "see logs"})
    assert created["key"] == "ENG-91" and fake.created[0]["fields"]["project"] == {"key": "ENG"}


def test_slack_resolves_the_channel_reads_newest_first_and_posts(httpserver: HTTPServer) -> None:
    fake = FakeSlack(httpserver)
    fake.add(5)
    slack = SlackConnector({"channel": "#kpi", "base_url": fake.base_url + "/api", "page_size": 2}, context())
    batches = list(slack.read(slack.stream("messages"), None))
    assert all(b.cursor is None for b in batches[:-1]), "newest-first history commits its cursor only at the end"
    assert batches[-1].cursor == {"value": "1709280005.000100"}
    assert sum(b.table().num_rows for b in batches) == 5
    assert slack.run_action("post_message", {"text": "KPIs are in"})["ts"] == "1709999999.000100"
    assert fake.posted == [{"channel": "C0KPI00001", "text": "KPIs are in"}]


def test_slack_ok_false_errors_are_typed(httpserver: HTTPServer) -> None:
    fake = FakeSlack(httpserver)
    wrong = ConnectorContext(
        "globex", "slack", secret="xoxb-wrong", allowed_hosts=("127.0.0.1", "localhost"), retry=FAST
    )
    with pytest.raises(AuthError, match="auth.test failed: invalid_auth"):
        SlackConnector({"channel": "#kpi", "base_url": fake.base_url + "/api"}, wrong).check()
    with pytest.raises(NotFound, match="channel #missing does not exist"):
        SlackConnector({"channel": "#missing", "base_url": fake.base_url + "/api"}, context()).check()
