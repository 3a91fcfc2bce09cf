"""The built-in tools against real peers: a DuckDB warehouse, the ops-store knowledge base, a working
directory with hostile links, and loopback Jira, Slack and web servers for the integration actions."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from connector_peers import TOKEN, FakeJira, FakeSlack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pytest_httpserver import HTTPServer
from sqlalchemy import Engine, select
from test_sql_guard import assert_scoped, build_warehouse
from werkzeug import Response

from agentprovision.config import load_config_dir
from agentprovision.plugins import TOOLS_GROUP, load_plugin, registered_names
from agentprovision.settings import Settings
from agentprovision.store import models as m
from agentprovision.store.db import session_factory, transaction
from agents.tools import MAX_CONTENT_CHARS, Tool, ToolContext, ToolError, ToolPluginError, ToolResult, load_tools
from agents.tools.base import render
from agents.tools.builtin import BUILTIN_TOOLS
from agents.tools.workspace import prepare_workdir
from connectors import kb
from connectors.credentials import MappingVault, SecretResolver
from connectors.http import RetryPolicy
from connectors.sync import SyncOptions

EXAMPLE_CONFIG = Path(__file__).resolve().parent.parent / "config"
FAST = SyncOptions(retry=RetryPolicy(max_attempts=1, backoff_base=0.01, backoff_max=0.01, timeout=5))


@pytest.fixture(scope="module")
def admin_config():  # type: ignore[no-untyped-def]
    result = load_config_dir(EXAMPLE_CONFIG)
    assert result.ok, result.issues
    return result.config


def make_settings(tmp_path: Path, store_url: str = "sqlite://") -> Settings:
    return Settings(
        state_dir=tmp_path / "state",
        database_url=store_url,
        config_dir=tmp_path / "config",
        warehouse_target="duckdb",
        duckdb_path=tmp_path / "warehouse.duckdb",
    )


def context(
    tenant: str, engine: Engine, settings: Settings, config: Any, workdir: Path | None = None, **extra: Any
) -> ToolContext:
    return ToolContext(
        tenant_id=tenant,
        agent_id=f"{tenant}-agent",
        run_id="run-1",
        config=config,
        engine=engine,
        settings=settings,
        workdir=workdir or settings.state_dir,
        parameters=extra.pop("parameters", {}),
        **extra,
    )


def seed_tenant(engine: Engine, tenant_id: str, integrations: list[dict[str, Any]] = ()) -> None:
    with transaction(session_factory(engine)) as session:
        if session.get(m.Tenant, tenant_id) is None:
            session.add(
                m.Tenant(
                    tenant_id=tenant_id,
                    display_name=tenant_id,
                    region="us",
                    plan="business",
                    max_concurrent_runs=1,
                    budget_hard_usd=Decimal(100),
                    config_version=1,
                )
            )
            session.flush()
        for spec in integrations:
            session.add(
                m.Integration(
                    tenant_id=tenant_id, integration_id=spec["id"], kind=spec["kind"], config_version=1, spec=spec
                )
            )


# --- the registry -------------------------------------------------------------------------------------


def test_the_seven_built_ins_load_as_tools_with_json_schemas() -> None:
    tools = load_tools()
    builtins = {"warehouse_query", "kb_search", "repo_inspect", "config_inspect", "open_ticket", "post_message"}
    assert builtins | {"fetch_page"} <= set(tools)
    for name, tool in tools.items():
        assert isinstance(tool, Tool) and tool.name == name
        assert tool.parameters["type"] == "object" and tool.parameters["properties"]
        assert tool.parameters.get("additionalProperties") is False
    assert {n for n, t in tools.items() if t.needs_approval} >= {"open_ticket", "post_message"}
    assert not tools["open_ticket"].read_only and tools["warehouse_query"].read_only
    assert load_tools(["kb_search"]).keys() == {"kb_search"}


def test_entry_points_publish_the_same_objects_config_validation_reads() -> None:
    for name, tool in BUILTIN_TOOLS.items():
        assert name in registered_names(TOOLS_GROUP)
        assert load_plugin(TOOLS_GROUP, name) is tool


def install_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str, source: str, entries: str) -> None:
    """What installing a plug-in package leaves behind: its module and a dist-info with entry points."""
    (tmp_path / f"{module}.py").write_text(source)
    dist_info = tmp_path / f"{module}-0.1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1.0\n")
    (dist_info / "entry_points.txt").write_text(f"[{TOOLS_GROUP}]\n{entries}\n")
    monkeypatch.syspath_prepend(str(tmp_path))


PLUGIN = """
from agents.tools import ToolResult

class Echo:
    name = "echo"
    description = "Echo the text back."
    read_only = True
    needs_approval = False
    parameters = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}

    def run(self, ctx, arguments):
        return ToolResult(content=arguments["text"], data={"text": arguments["text"]})

class Nameless:
    description = "no name"

ECHO = Echo()
"""


def test_a_plugin_tool_is_found_and_a_broken_one_is_named_only_when_asked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin(
        tmp_path,
        monkeypatch,
        "ap_tool_plugin",
        PLUGIN,
        "echo = ap_tool_plugin:ECHO\nbroken = ap_tool_plugin_missing:TOOL\nnameless = ap_tool_plugin:Nameless",
    )
    echo = load_tools(["echo"])["echo"]
    assert echo.run(None, {"text": "hi"}).content == "hi"  # type: ignore[arg-type]
    with pytest.raises(ToolPluginError, match=r"tool plug-in 'broken' \(ap_tool_plugin_missing:TOOL.*failed to import"):
        load_tools(["broken"])
    with pytest.raises(ToolPluginError, match=r"'nameless'.*name must be a str.*run\(ctx, arguments\) is missing"):
        load_tools(["nameless"])
    with pytest.raises(ToolPluginError, match="no tool named nope is installed"):
        load_tools(["nope"])
    assert "ap_tool_plugin_missing" not in sys.modules


def test_bad_arguments_are_tool_errors_the_model_can_read(tmp_path: Path, store: Engine, admin_config: Any) -> None:
    ctx = context("acme", store, make_settings(tmp_path), admin_config)
    tools = load_tools()
    cases = [
        ("kb_search", {}, "query: Field required"),
        ("kb_search", {"query": "x", "limit": 500}, "limit: Input should be less than or equal to 20"),
        ("kb_search", {"query": "x", "colour": "red"}, "colour: unknown argument"),
        ("repo_inspect", {"action": "delete"}, "action: Input should be 'list', 'read' or 'search'"),
        ("repo_inspect", {"action": "search"}, "search needs a pattern"),
        ("warehouse_query", {"sql": "SELECT 1", "max_rows": 0}, "max_rows"),
        ("fetch_page", {"url": "file:///etc/passwd"}, "url: String should match pattern"),
        ("open_ticket", "{not json", "not valid JSON"),
        ("post_message", ["text"], "must be a JSON object"),
    ]
    for name, arguments, expected in cases:
        with pytest.raises(ToolError) as failure:
            tools[name].run(ctx, arguments)  # type: ignore[arg-type]
        assert failure.value.error_class == "tool"
        assert expected in failure.value.message, (name, failure.value.message)


def test_results_are_bounded_json_data() -> None:
    rendered = render({"rows": ["x" * 100] * 1000})
    assert len(rendered) <= MAX_CONTENT_CHARS and rendered.endswith("more characters]")
    assert ToolResult.of({"a": 1}).content == '{"a":1}'


# --- warehouse_query ----------------------------------------------------------------------------------


@pytest.fixture
def warehouse_ctx(tmp_path: Path, store: Engine, admin_config: Any) -> ToolContext:
    settings = make_settings(tmp_path)
    build_warehouse(settings.published_duckdb_path)
    return context("acme", store, settings, admin_config)


def test_warehouse_query_lists_marts_and_answers_with_the_tenants_rows(warehouse_ctx: ToolContext) -> None:
    tool = load_tools()["warehouse_query"]
    listing = tool.run(warehouse_ctx, {})
    assert set(listing.data["marts"]) == {"marts.fct_llm_calls", "marts.fct_agent_runs"}  # dim_models has no tenant
    result = tool.run(warehouse_ctx, {"sql": "SELECT tenant_id, count(*) n FROM marts.fct_llm_calls GROUP BY 1"})
    assert result.data["rows"] == [["acme", 12]] and result.data["columns"] == ["tenant_id", "n"]
    assert json.loads(result.content)["rows"] == [["acme", 12]]
    capped = tool.run(warehouse_ctx, {"sql": "SELECT * FROM fct_llm_calls", "max_rows": 5})
    assert capped.data["row_count"] == 5 and capped.data["truncated"] is True


def test_warehouse_query_refusals_are_policy_errors_and_engine_errors_are_tool_errors(
    warehouse_ctx: ToolContext,
) -> None:
    tool = load_tools()["warehouse_query"]
    with pytest.raises(ToolError) as refused:
        tool.run(warehouse_ctx, {"sql": "SELECT * FROM read_csv('/etc/passwd')"})
    assert refused.value.error_class == "policy" and "read_csv" in refused.value.message
    with pytest.raises(ToolError) as failed:
        tool.run(warehouse_ctx, {"sql": "SELECT no_such_column FROM fct_llm_calls"})
    assert failed.value.error_class == "tool" and "no_such_column" in failed.value.message


def test_warehouse_query_on_duckdb_reads_through_the_mart_reader(warehouse_ctx: ToolContext) -> None:
    """The shared reader's rules hold for the tool: a platform-wide mart is named as such, a trailing comment
    after the final `;` is fine, and SQL that does not parse is a mistake to fix (tool), not a refusal."""
    tool = load_tools()["warehouse_query"]
    with pytest.raises(ToolError) as platform_wide:
        tool.run(warehouse_ctx, {"sql": "SELECT * FROM marts.dim_models"})
    assert platform_wide.value.error_class == "policy" and "platform-wide" in platform_wide.value.message
    done = tool.run(warehouse_ctx, {"sql": "SELECT count(*) AS n FROM fct_llm_calls; -- that is all"})
    assert done.data["rows"] == [[12]]
    with pytest.raises(ToolError) as typo:
        tool.run(warehouse_ctx, {"sql": "SELECT count(* FROM fct_llm_calls"})
    assert typo.value.error_class == "tool" and "does not parse" in typo.value.message
    with pytest.raises(ToolError) as failed:
        tool.run(warehouse_ctx, {"sql": "SELECT CAST(call_id AS INTEGER) FROM fct_llm_calls"})
    assert failed.value.error_class == "tool" and "query failed" in failed.value.message


def test_warehouse_query_stops_a_runaway_query(warehouse_ctx: ToolContext) -> None:
    from agents.tools.warehouse import run_query

    with pytest.raises(ToolError, match="longer than 0.5s"):
        run_query(
            warehouse_ctx.settings.published_duckdb_path,
            "acme",
            "SELECT count(*) FROM range(1000000000) a, range(1000000) b",
            timeout=0.5,
        )


def test_warehouse_query_without_a_published_warehouse_says_what_to_run(
    tmp_path: Path, store: Engine, admin_config: Any
) -> None:
    ctx = context("acme", store, make_settings(tmp_path), admin_config)
    with pytest.raises(ToolError, match="no published warehouse at .*make run"):
        load_tools()["warehouse_query"].run(ctx, {"sql": "SELECT 1"})


# Generated queries: building blocks an adversarial model might combine, each run on the real
# warehouse and compared with the same query over the caller's rows only (see test_sql_guard).
MART_SPELLINGS = st.sampled_from(
    ["marts.fct_llm_calls", "fct_llm_calls", '"marts"."fct_llm_calls"', "MARTS.FCT_LLM_CALLS", '"FCT_LLM_CALLS"']
)
RUN_SPELLINGS = st.sampled_from(["marts.fct_agent_runs", "fct_agent_runs", '"Marts"."Fct_Agent_Runs"'])
PREDICATES = st.sampled_from(
    [
        "1=1",
        "tenant_id = 'globex'",
        "tenant_id <> 'acme'",
        "tenant_id = 'acme' OR 1=1",
        "true OR tenant_id IS NULL",
        "tenant_id IN ('acme', 'globex')",
        "tenant_id LIKE '%'",
        "cost_usd > 0 OR tenant_id = 'globex'",
        "NOT (tenant_id = 'acme')",
        "tenant_id = 'globex' /* comment */ OR 1 = 1 -- trailing\n",
    ]
)
COMMENTS = st.sampled_from([" ", " /* x */ ", " -- c\n ", "\n\t"])


@st.composite
def hostile_queries(draw: st.DrawFn) -> str:
    calls = draw(MART_SPELLINGS)
    runs = draw(RUN_SPELLINGS)
    where = draw(PREDICATES)
    gap = draw(COMMENTS)
    alias = draw(st.sampled_from(["", " c", " AS c", ' AS "C"']))
    ref = "c" if alias else None
    tenant_col = f"{ref}.tenant_id" if ref else "tenant_id"
    shape = draw(st.integers(min_value=0, max_value=11))
    base = f"SELECT *{gap}FROM {calls}{alias} WHERE {where}"
    if shape == 0:
        return base
    if shape == 1:
        return f"SELECT {tenant_col}, count(*), sum(cost_usd) FROM {calls}{alias} WHERE {where} GROUP BY 1"
    if shape == 2:
        return f"SELECT call_id FROM {calls} WHERE {where} UNION ALL SELECT run_id FROM {runs} WHERE {where}"
    if shape == 3:
        return f"WITH x AS ({base}) SELECT count(*) FROM x{gap}WHERE {where.replace('tenant_id', 'x.tenant_id')}"
    if shape == 4:
        return f"SELECT * FROM {runs} r WHERE EXISTS (SELECT 1 FROM {calls} q WHERE q.tenant_id <> r.tenant_id)"
    if shape == 5:
        return f"SELECT (SELECT count(*) FROM {calls} WHERE {where}) AS n, (SELECT max(run_id) FROM {runs})"
    if shape == 6:
        qualified = where.replace("tenant_id", "q.tenant_id").replace("cost_usd", "q.cost_usd")
        return f"SELECT r.run_id, q.call_id FROM {runs} r JOIN {calls} q ON r.tenant_id <> q.tenant_id OR {qualified}"
    if shape == 7:
        return f"SELECT * FROM {runs} r, LATERAL (SELECT count(*) AS n FROM {calls} q WHERE {where})"
    if shape == 8:
        return f"SELECT * FROM ({base}) s WHERE s.call_id IN (SELECT call_id FROM {calls} WHERE {where})"
    if shape == 9:
        return f"SELECT call_id FROM {calls} WHERE {where} EXCEPT SELECT call_id FROM {calls} WHERE tenant_id = 'acme'"
    if shape == 10:
        depth = draw(st.integers(min_value=1, max_value=4))
        query = base
        for level in range(depth):
            query = f"SELECT * FROM ({query}) l{level} WHERE {where}"
        return query
    return f"WITH a AS (SELECT * FROM {calls}), b AS (SELECT * FROM a WHERE {where}) SELECT count(*) FROM b{gap}"


@pytest.fixture(scope="module")
def shared_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_warehouse(tmp_path_factory.mktemp("generated") / "warehouse.duckdb")


EXECUTED: list[str] = []


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sql=hostile_queries(), tenant=st.sampled_from(["acme", "globex"]))
def test_generated_queries_never_return_another_tenants_rows(shared_warehouse: Path, sql: str, tenant: str) -> None:
    assert_scoped(shared_warehouse, tenant, sql)
    EXECUTED.append(sql)


def test_the_generator_ran_over_a_hundred_distinct_queries() -> None:
    # Runs after the property test in file order; hypothesis may repeat examples, so count distinct ones.
    assert len(set(EXECUTED)) >= 100, len(set(EXECUTED))


# --- kb_search ----------------------------------------------------------------------------------------


def test_kb_search_returns_the_tenants_own_passages_with_source_ids(
    tmp_path: Path, store: Engine, admin_config: Any
) -> None:
    seed_tenant(store, "acme")
    seed_tenant(store, "globex")
    with transaction(session_factory(store)) as session:
        for tenant, body in (
            ("acme", "# Deploys\n\nRoll back a failed deploy with the blue-green switch.\n\n# Lunch\n\nTacos."),
            ("globex", "# Deploys\n\nGlobex secret rollback procedure for deploy failures."),
        ):
            kb.upsert_documents(
                session,
                tenant_id=tenant,
                integration_id="handbook",
                rows=[{"doc_id": "runbook.md", "title": "Runbook", "body": body, "content_hash": tenant}],
            )
    ctx = context("acme", store, make_settings(tmp_path), admin_config)
    result = load_tools()["kb_search"].run(ctx, {"query": "rollback failed deploy"})
    passages = result.data["passages"]
    assert passages and passages[0]["source_id"] == "handbook/runbook.md" and passages[0]["heading"] == "Deploys"
    assert "blue-green" in passages[0]["passage"]
    assert "Globex" not in result.content
    assert load_tools()["kb_search"].run(ctx, {"query": "zebra"}).data["passages"] == []


# --- repo_inspect and config_inspect ------------------------------------------------------------------


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("TOP SECRET of another tenant\n")
    root = tmp_path / "work"
    (root / "src").mkdir(parents=True)
    (root / "src" / "app.py").write_text("def main():\n    return 'hello'\n\n# TODO: handle errors\n")
    (root / "README.md").write_text("# Demo\n\nTODO write docs\n")
    (root / "blob.bin").write_bytes(b"\x00\x01binary")
    (root / "big.txt").write_text("line\n" * 100_000)
    (root / "link_out").symlink_to(outside, target_is_directory=True)
    (root / "secret_link.txt").symlink_to(outside / "secret.txt")
    (root / "src" / "inner_link.py").symlink_to(root / "src" / "app.py")
    return root


def test_repo_inspect_lists_reads_and_searches_inside_the_workdir(
    tmp_path: Path, store: Engine, admin_config: Any, workdir: Path
) -> None:
    ctx = context("acme", store, make_settings(tmp_path), admin_config, workdir=workdir)
    tool = load_tools()["repo_inspect"]
    listed = [e["path"] for e in tool.run(ctx, {"action": "list"}).data["entries"]]
    assert listed == ["README.md", "big.txt", "blob.bin", "src/app.py", "src/inner_link.py"]
    assert [e["path"] for e in tool.run(ctx, {"action": "list", "pattern": "*.py"}).data["entries"]] == [
        "src/app.py",
        "src/inner_link.py",
    ]
    read = tool.run(ctx, {"action": "read", "path": "src/app.py", "start_line": 2, "max_lines": 1}).data
    assert read["text"] == "    return 'hello'" and read["more"] is True
    assert tool.run(ctx, {"action": "read", "path": "blob.bin"}).data["binary"] is True
    big = tool.run(ctx, {"action": "read", "path": "big.txt", "max_lines": 2000})
    assert big.data["end_line"] == 2000 and len(big.content) <= MAX_CONTENT_CHARS
    found = tool.run(ctx, {"action": "search", "pattern": "todo"}).data["matches"]
    assert {(f["path"], f["line"]) for f in found} == {("README.md", 3), ("src/app.py", 4), ("src/inner_link.py", 4)}
    assert tool.run(ctx, {"action": "search", "pattern": r"def \w+\(", "regex": True}).data["matches"][0]["line"] == 1
    assert "SECRET" not in json.dumps(tool.run(ctx, {"action": "search", "pattern": "secret"}).data)


@pytest.mark.parametrize(
    "path",
    [
        "..",
        "../outside/secret.txt",
        "/etc/passwd",
        "~/.ssh/id_rsa",
        "src/../../outside",
        "link_out",
        "link_out/secret.txt",
        "secret_link.txt",
        "C:\\Windows",
        "src/../../../etc/passwd",
    ],
)
def test_repo_inspect_refuses_every_way_out(
    tmp_path: Path, store: Engine, admin_config: Any, workdir: Path, path: str
) -> None:
    ctx = context("acme", store, make_settings(tmp_path), admin_config, workdir=workdir)
    for arguments in (
        {"action": "read", "path": path},
        {"action": "list", "path": path},
        {"action": "search", "path": path, "pattern": "SECRET"},
    ):
        with pytest.raises(ToolError) as refused:
            load_tools()["repo_inspect"].run(ctx, arguments)
        assert refused.value.error_class == "policy", arguments
        assert "SECRET" not in refused.value.message


K8S = """\
apiVersion: apps/v1
kind: Deployment
spec:
  template:
    spec:
      hostNetwork: true
      containers:
        - name: api
          image: registry.example.com/api:latest
          env:
            - name: DB_PASSWORD
              value: hunter2-plain
            - name: API_TOKEN
              valueFrom: {secretKeyRef: {name: api, key: token}}
          securityContext:
            privileged: true
            allowPrivilegeEscalation: true
        - name: sidecar
          image: busybox
        - name: pinned
          image: nginx:1.27.2
      volumes:
        - name: host
          hostPath: {path: /var/run/docker.sock}
"""
COMPOSE = """\
services:
  db:
    image: postgres:16
    environment:
      POSTGRES_PASSWORD: ${POSTGRES_PASSWORD}
  worker:
    image: acme/worker
    network_mode: host
    cap_add: [SYS_ADMIN]
"""
DOCKERFILE = """\
FROM python:3.12-slim AS build
RUN pip install uv
FROM python:latest
ENV API_KEY=sk-live-abcdefghijklmnop1234 \\
    MODE=prod
ADD https://example.com/tool.tgz /opt/
RUN curl -sSL https://get.example.com | sh
"""


def test_config_inspect_lints_with_real_parsers_and_never_repeats_a_secret(
    tmp_path: Path, store: Engine, admin_config: Any
) -> None:
    root = tmp_path / "work"
    (root / "deploy").mkdir(parents=True)
    (root / "deploy" / "api.yaml").write_text(K8S)
    (root / "docker-compose.yml").write_text(COMPOSE)
    (root / "Dockerfile").write_text(DOCKERFILE)
    (root / ".env").write_text("# local\nSTRIPE_SECRET=sk_live_51Habcdefghijklmnop\nDEBUG=1\nDB_PASSWORD=${DB_PW}\n")
    (root / "settings.json").write_text(json.dumps({"db": {"host": "x", "password": "pa55word-json"}}, indent=2))
    (root / "pyproject.toml").write_text('[tool.app]\nclient_secret = "toml-secret-value"\nname = "ok"\n')
    (root / "broken.yaml").write_text("a: [1, 2\nb: 3\n")
    (root / "clean.yaml").write_text("image: nginx:1.27.2\nreplicas: 2\n")
    ctx = context("acme", store, make_settings(tmp_path), admin_config, workdir=root)
    tool = load_tools()["config_inspect"]
    listed = {f["path"]: f["kind"] for f in tool.run(ctx, {"action": "list"}).data["files"]}
    assert listed["Dockerfile"] == "dockerfile" and listed[".env"] == "env" and listed["pyproject.toml"] == "toml"

    result = tool.run(ctx, {"action": "lint"})
    found = {(f["path"], f["line"], f["rule"]) for f in result.data["findings"]}
    expected = {
        ("deploy/api.yaml", 6, "host-namespace"),
        ("deploy/api.yaml", 9, "latest-tag"),
        ("deploy/api.yaml", 12, "plaintext-secret"),
        ("deploy/api.yaml", 16, "privileged"),
        ("deploy/api.yaml", 17, "privilege-escalation"),
        ("deploy/api.yaml", 19, "latest-tag"),  # busybox: no tag at all
        ("deploy/api.yaml", 24, "host-path"),
        ("docker-compose.yml", 7, "latest-tag"),
        ("docker-compose.yml", 8, "host-namespace"),
        ("docker-compose.yml", 9, "capabilities"),
        ("Dockerfile", 3, "latest-tag"),
        ("Dockerfile", 4, "plaintext-secret"),
        ("Dockerfile", 6, "add-url"),
        ("Dockerfile", 7, "pipe-to-shell"),
        ("Dockerfile", None, "runs-as-root"),
        (".env", 2, "plaintext-secret"),
        ("settings.json", 4, "plaintext-secret"),
        ("pyproject.toml", 2, "plaintext-secret"),
        ("broken.yaml", 2, "parse-error"),
    }
    assert found == expected, found ^ expected
    assert result.data["files_checked"] == 8 and result.data["summary"]["high"] == 9
    for secret in ("hunter2-plain", "sk-live-abcdefghijklmnop1234", "sk_live_51H", "pa55word-json", "toml-secret"):
        assert secret not in result.content
    only = tool.run(ctx, {"action": "lint", "path": "clean.yaml"})
    assert only.data["findings"] == [] and only.data["files_checked"] == 1
    with pytest.raises(ToolError) as refused:
        tool.run(ctx, {"action": "lint", "path": "../"})
    assert refused.value.error_class == "policy"


def test_prepare_workdir_copies_the_tenants_repo_and_confines_the_source(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    repo = settings.config_dir / "tenant_files" / "acme" / "repo"
    repo.mkdir(parents=True)
    (repo / "main.tf").write_text('resource "x" "y" {}\n')
    work = prepare_workdir(settings, "acme", "run-7")
    assert (work / "main.tf").read_text() == 'resource "x" "y" {}\n'
    assert work.is_relative_to(settings.state_dir)
    (repo / "main.tf").write_text("changed\n")
    assert (prepare_workdir(settings, "acme", "run-7") / "main.tf").read_text().startswith("resource")
    assert list(prepare_workdir(settings, "acme", "run-8", source="missing").iterdir()) == []
    with pytest.raises(ToolError) as refused:
        prepare_workdir(settings, "acme", "run-9", source="../globex/repo")
    assert refused.value.error_class == "policy"


# --- open_ticket, post_message, fetch_page ------------------------------------------------------------


def jira_spec(fake: FakeJira) -> dict[str, Any]:
    return {
        "id": "tracker",
        "kind": "jira",
        "credential": "secret://jira-token",
        "allowed_hosts": ["localhost", "127.0.0.1"],
        "settings": {"base_url": fake.base_url, "project": "ENG"},
    }


def slack_spec(fake: FakeSlack) -> dict[str, Any]:
    return {
        "id": "chat",
        "kind": "slack",
        "credential": "secret://slack-token",
        "allowed_hosts": ["localhost", "127.0.0.1"],
        "settings": {"channel": "#kpi", "base_url": fake.base_url + "/api"},
    }


def action_ctx(tmp_path: Path, store: Engine, config: Any, tenant: str = "acme", **parameters: Any) -> ToolContext:
    vault = MappingVault({(tenant, "jira-token"): TOKEN, (tenant, "slack-token"): TOKEN})
    return context(
        tenant,
        store,
        make_settings(tmp_path),
        config,
        resolver=SecretResolver(vault),
        connector_options=FAST,
        parameters=parameters,
    )


def test_open_ticket_and_post_message_reach_the_service_and_name_their_outcome(
    tmp_path: Path, store: Engine, admin_config: Any, httpserver: HTTPServer
) -> None:
    fake_jira = FakeJira(httpserver)
    seed_tenant(store, "acme", [jira_spec(fake_jira)])
    ctx = action_ctx(tmp_path, store, admin_config)
    ticket = load_tools()["open_ticket"].run(ctx, {"title": "Deploy failed", "body": "see logs", "labels": ["ops"]})
    assert ticket.outcome == "ticket_opened" and ticket.data["ticket"]["key"] == "ENG-91"
    fields = fake_jira.created[0]["fields"]
    assert fields["summary"] == "Deploy failed" and fields["labels"] == ["ops"] and fields["project"] == {"key": "ENG"}
    with transaction(session_factory(store)) as session:
        audit = session.scalars(select(m.AuditRecord).where(m.AuditRecord.action == "integration.action.create_issue"))
        record = audit.one()
    assert record.actor == "agent:acme/acme-agent" and record.tenant_id == "acme"
    assert "see logs" not in json.dumps(record.details)


def test_a_repeated_tool_call_after_a_crash_opens_no_second_ticket(
    tmp_path: Path, store: Engine, admin_config: Any, httpserver: HTTPServer
) -> None:
    from agents.runtime.tooling import CURRENT_TOOL_CALL

    fake_jira = FakeJira(httpserver)
    seed_tenant(store, "acme", [jira_spec(fake_jira)])
    ctx = action_ctx(tmp_path, store, admin_config)
    tool = load_tools()["open_ticket"]
    token = CURRENT_TOOL_CALL.set("call-7")
    try:
        first = tool.run(ctx, {"title": "Deploy failed"})
        replayed = tool.run(ctx, {"title": "Deploy failed"})  # what a resumed run does after kill -9
    finally:
        CURRENT_TOOL_CALL.reset(token)
    assert len(fake_jira.created) == 1
    assert replayed.data == first.data and replayed.outcome == "ticket_opened"
    other_call = CURRENT_TOOL_CALL.set("call-8")
    try:
        tool.run(ctx, {"title": "Another failure"})
    finally:
        CURRENT_TOOL_CALL.reset(other_call)
    assert len(fake_jira.created) == 2


def test_post_message_goes_to_the_configured_channel(
    tmp_path: Path, store: Engine, admin_config: Any, httpserver: HTTPServer
) -> None:
    fake_slack = FakeSlack(httpserver)
    seed_tenant(store, "globex", [slack_spec(fake_slack)])
    ctx = action_ctx(tmp_path, store, admin_config, tenant="globex")
    posted = load_tools()["post_message"].run(ctx, {"text": "KPI: 42"})
    assert posted.outcome == "message_posted" and posted.data["message"]["ts"] == "1709999999.000100"
    assert fake_slack.posted == [{"channel": "C0KPI00001", "text": "KPI: 42"}]


def test_actions_respect_tenant_agent_allow_lists_and_hosts(
    tmp_path: Path, store: Engine, admin_config: Any, httpserver: HTTPServer
) -> None:
    fake_jira = FakeJira(httpserver)
    seed_tenant(store, "acme", [jira_spec(fake_jira)])
    seed_tenant(store, "globex")
    tools = load_tools()
    # Another tenant cannot use acme's integration, named or not.
    globex = action_ctx(tmp_path, store, admin_config, tenant="globex")
    with pytest.raises(ToolError) as refused:
        tools["open_ticket"].run(globex, {"title": "x", "integration": "tracker"})
    assert refused.value.error_class == "policy" and "no active integration" in refused.value.message
    with pytest.raises(ToolError, match="no integration of this tenant offers create_issue"):
        tools["open_ticket"].run(globex, {"title": "x"})
    # An agent limited to other integrations cannot use this one.
    limited = action_ctx(tmp_path, store, admin_config, integrations=["other"])
    with pytest.raises(ToolError, match="may not use integration 'tracker'"):
        tools["open_ticket"].run(limited, {"title": "x", "integration": "tracker"})
    assert fake_jira.created == []
    # A page on a host no integration allows is never requested.
    acme = action_ctx(tmp_path, store, admin_config)
    with pytest.raises(ToolError) as blocked:
        tools["fetch_page"].run(acme, {"url": "https://evil.example.com/steal"})
    assert blocked.value.error_class == "policy"


def test_fetch_page_reads_an_allowed_page_as_text_without_the_credential(
    tmp_path: Path, store: Engine, admin_config: Any, httpserver: HTTPServer
) -> None:
    page = "<html><head><title>Status</title></head><body><h1>All good</h1><script>x()</script></body></html>"
    httpserver.expect_request("/status").respond_with_response(Response(page, content_type="text/html"))
    seed_tenant(
        store,
        "acme",
        [
            {
                "id": "site",
                "kind": "docs",
                "credential": "secret://jira-token",
                "allowed_hosts": ["localhost"],
                "settings": {"pages": [httpserver.url_for("/status").replace("127.0.0.1", "localhost")]},
            }
        ],
    )
    ctx = action_ctx(tmp_path, store, admin_config)
    url = httpserver.url_for("/status").replace("127.0.0.1", "localhost")
    result = load_tools()["fetch_page"].run(ctx, {"url": url})
    assert result.data["title"] == "Status" and "All good" in result.data["text"] and "x()" not in result.data["text"]
    request = httpserver.log[-1][0]
    assert "Authorization" not in request.headers and TOKEN not in json.dumps(dict(request.headers))
    assert os.environ.get("NO_SUCH") is None


# --- warehouse_query on the PostgreSQL warehouse --------------------------------------------------------


@pytest.mark.postgres
def test_warehouse_query_on_postgres_goes_through_the_mart_reader_scoped_and_capped(
    tmp_path: Path, postgres_url: str, admin_config: Any
) -> None:
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA marts; CREATE SCHEMA raw")
        conn.execute("CREATE TABLE marts.fct_llm_calls (call_id text, tenant_id text, cost_usd numeric(18, 6))")
        conn.execute("CREATE TABLE marts.dim_models (model_name text)")
        conn.execute("CREATE TABLE raw.events (tenant_id text, payload text)")
        for tenant, count in (("acme", 12), ("globex", 17)):
            for i in range(count):
                conn.execute("INSERT INTO marts.fct_llm_calls VALUES (%s, %s, %s)", (f"{tenant}-{i}", tenant, i / 10))
    settings = replace(make_settings(tmp_path), warehouse_target="postgres", warehouse_url=postgres_url)
    ctx = ToolContext("acme", "acme-agent", "run-1", admin_config, None, settings, tmp_path)  # type: ignore[arg-type]
    tool = load_tools()["warehouse_query"]
    assert tool.run(ctx, {}).data["marts"] == {"marts.fct_llm_calls": ["call_id", "tenant_id", "cost_usd"]}
    for sql in (
        "SELECT count(*) FROM marts.fct_llm_calls WHERE 1=1 OR tenant_id = 'globex'",
        "SELECT count(*) FROM (SELECT * FROM fct_llm_calls UNION ALL SELECT * FROM fct_llm_calls "
        "WHERE tenant_id <> 'acme') u WHERE u.tenant_id = 'acme' -- comment",
    ):
        assert tool.run(ctx, {"sql": sql}).data["rows"] == [[12]], sql
    capped = tool.run(ctx, {"sql": "SELECT call_id FROM fct_llm_calls ORDER BY call_id", "max_rows": 3})
    assert capped.data["row_count"] == 3 and capped.data["truncated"] and "globex" not in capped.content
    for sql, error_class in (
        ("SELECT * FROM raw.events", "policy"),
        ("SELECT * FROM (", "tool"),
        ("SELECT nope FROM fct_llm_calls", "tool"),
        ("DELETE FROM marts.fct_llm_calls", "policy"),
    ):
        with pytest.raises(ToolError) as failure:
            tool.run(ctx, {"sql": sql})
        assert failure.value.error_class == error_class, (sql, failure.value.message)
