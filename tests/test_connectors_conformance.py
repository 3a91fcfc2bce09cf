"""The conformance kit passes for every built-in connector and for a freshly scaffolded one."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from connector_peers import TOKEN, FakeGithub, FakeJira, FakeRest, FakeSlack
from pytest_httpserver import HTTPServer
from sqlalchemy import create_engine, text

from agentprovision.plugins import CONNECTORS_GROUP, registered_names
from connectors.catalog import BUILT_IN
from connectors.conformance import CHECKS, TENANT, ConformanceCase, run_check
from connectors.docs import DocsConnector
from connectors.files import FilesConnector
from connectors.github import GithubConnector
from connectors.jira import JiraConnector
from connectors.registry import connector_class
from connectors.rest import RestConnector
from connectors.scaffold import scaffold
from connectors.sdk import TENANT_FILES_DIR
from connectors.slack import SlackConnector
from connectors.sql import SqlConnector

LOOPBACK = ("127.0.0.1", "localhost")
ABSENT = "http://127.0.0.1:9"  # discard port: nothing listens, connection refused at once
DROP = f"{TENANT_FILES_DIR}/{TENANT}/drop"


def _touch_later(path: Path, n: int) -> None:
    """Give files strictly increasing mtimes regardless of filesystem timestamp granularity."""
    stamp = time.time_ns() - 10_000_000_000 + n * 1_000_000
    os.utime(path, ns=(stamp, stamp))


class FilesCase(ConformanceCase):
    connector = FilesConnector
    stream = "events"
    reread_allowance = 0

    def __init__(self, root: Path):
        self.base_dir = root
        self.drop = root / TENANT_FILES_DIR / TENANT / "drop"  # the tenant's own file area
        self.drop.mkdir(parents=True)
        self.count = 0

    def settings(self) -> dict[str, Any]:
        return {"path": DROP, "streams": [{"name": "events", "pattern": "*.jsonl", "primary_key": ["id"]}]}

    def invalid_settings(self) -> dict[str, Any]:
        return {"path": DROP, "streams": [{"name": "Bad Name", "pattern": "*"}]}

    def unreachable_settings(self) -> dict[str, Any]:
        return {**self.settings(), "path": f"{TENANT_FILES_DIR}/{TENANT}/missing"}

    def add_records(self, count: int) -> None:
        # One file per record, so batches (one per file) are small enough to fail between.
        for _ in range(count):
            self.count += 1
            path = self.drop / f"events-{self.count:04d}.jsonl"
            path.write_text(f'{{"id": {self.count}, "what": "event {self.count}"}}\n')
            _touch_later(path, self.count)


class DocsCase(FilesCase):
    connector = DocsConnector
    stream = "documents"

    def settings(self) -> dict[str, Any]:
        return {"path": DROP}

    def invalid_settings(self) -> dict[str, Any]:
        return {"pattern": "*.md"}  # neither path nor pages

    def unreachable_settings(self) -> dict[str, Any]:
        return {"pages": [f"{ABSENT}/handbook.md"]}

    @property
    def allowed_hosts(self) -> tuple[str, ...]:  # type: ignore[override]
        return LOOPBACK

    def add_records(self, count: int) -> None:
        for _ in range(count):
            self.count += 1
            path = self.drop / f"page-{self.count:04d}.md"
            path.write_text(f"# Page {self.count}\n\nBody of page {self.count}.\n")
            _touch_later(path, self.count)


class SqlCase(ConformanceCase):
    connector = SqlConnector
    stream = "positions"
    reread_allowance = 0

    def __init__(self, url: str):
        self.url = url
        self.engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
        with self.engine.begin() as connection:
            connection.execute(
                text(
                    "CREATE TABLE positions (id integer PRIMARY KEY, instrument text, quantity numeric(18,4),"
                    " updated_at timestamptz NOT NULL)"
                )
            )
        self.count = 0

    def settings(self) -> dict[str, Any]:
        return {"url": self.url, "table": "positions", "cursor_column": "updated_at"}

    def invalid_settings(self) -> dict[str, Any]:
        return {"url": self.url, "table": "positions"}  # no cursor_column

    def unreachable_settings(self) -> dict[str, Any]:
        return {**self.settings(), "url": "postgresql://postgres@127.0.0.1:9/none"}

    def add_records(self, count: int) -> None:
        with self.engine.begin() as connection:
            for _ in range(count):
                self.count += 1
                connection.execute(
                    text(
                        "INSERT INTO positions VALUES (:id, :instrument, 10.5,"
                        " timestamptz '2024-01-01 00:00:00+00' + make_interval(mins => :n))"
                    ),
                    {"id": self.count, "instrument": f"ISIN{self.count}", "n": self.count // 2},
                )


class HttpCase(ConformanceCase):
    credential = TOKEN
    bad_credential = "tok-revoked-000000000000"
    allowed_hosts = LOOPBACK


class RestCase(HttpCase):
    connector = RestConnector
    stream = "records"

    def __init__(self, server: HTTPServer):
        self.fake = FakeRest(server)

    def settings(self) -> dict[str, Any]:
        return {
            "base_url": self.fake.base_url + "/api",
            "auth": "api_key",
            "pagination": {"type": "page", "page_size": 2},
            "streams": [
                {
                    "name": "records",
                    "path": "records",
                    "records_path": "data",
                    "cursor_field": "updated_at",
                    "cursor_param": "since",
                    "sorted_by_cursor": True,
                    "fields": {"id": "integer", "title": "string", "updated_at": "timestamp"},
                }
            ],
        }

    def invalid_settings(self) -> dict[str, Any]:
        return {"base_url": self.fake.base_url, "streams": [{"name": "r", "path": "x", "cursor_field": "updated"}]}

    def unreachable_settings(self) -> dict[str, Any]:
        return {**self.settings(), "base_url": ABSENT}

    def add_records(self, count: int) -> None:
        self.fake.add(count)


class GithubCase(HttpCase):
    connector = GithubConnector
    stream = "issues"

    def __init__(self, server: HTTPServer):
        self.fake = FakeGithub(server)

    def settings(self) -> dict[str, Any]:
        return {"repository": self.fake.repository, "base_url": self.fake.base_url, "page_size": 2}

    def invalid_settings(self) -> dict[str, Any]:
        return {"repository": "not a repository"}

    def unreachable_settings(self) -> dict[str, Any]:
        return {**self.settings(), "base_url": ABSENT}

    def add_records(self, count: int) -> None:
        self.fake.add_issues(count)


class JiraCase(GithubCase):
    connector = JiraConnector

    def __init__(self, server: HTTPServer):
        self.fake = FakeJira(server)

    def settings(self) -> dict[str, Any]:
        return {"base_url": self.fake.base_url, "project": "ENG", "page_size": 2}

    def invalid_settings(self) -> dict[str, Any]:
        return {"base_url": self.fake.base_url, "project": "ENG", "auth": "basic"}  # basic needs email

    def add_records(self, count: int) -> None:
        self.fake.add(count)


class SlackCase(HttpCase):
    connector = SlackConnector
    stream = "messages"
    reread_allowance = 0

    def __init__(self, server: HTTPServer):
        self.fake = FakeSlack(server)

    def settings(self) -> dict[str, Any]:
        return {"channel": "#kpi", "base_url": self.fake.base_url + "/api", "page_size": 2}

    def invalid_settings(self) -> dict[str, Any]:
        return {"channel": "kpi without a hash"}

    def unreachable_settings(self) -> dict[str, Any]:
        return {**self.settings(), "base_url": ABSENT}

    def add_records(self, count: int) -> None:
        self.fake.add(count)


@pytest.fixture
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ConformanceCase]:
    kind = request.param
    if kind in ("files", "docs"):
        yield (FilesCase if kind == "files" else DocsCase)(tmp_path)
    elif kind == "sql":
        yield SqlCase(request.getfixturevalue("postgres_url"))
    else:
        server = request.getfixturevalue("httpserver")
        yield {"rest": RestCase, "github": GithubCase, "jira": JiraCase, "slack": SlackCase}[kind](server)


KINDS = ["files", "docs", pytest.param("sql", marks=pytest.mark.postgres), "rest", "github", "jira", "slack"]


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("case", KINDS, indirect=True)
def test_built_in_connector_conforms(case: ConformanceCase, check: str, tmp_path: Path) -> None:
    workdir = tmp_path / "kit"
    workdir.mkdir()
    run_check(case, check, workdir)


def test_every_built_in_kind_is_registered_and_covered_by_the_kit() -> None:
    assert (
        set(BUILT_IN) == registered_names(CONNECTORS_GROUP) == {k if isinstance(k, str) else k.values[0] for k in KINDS}
    )
    for kind, cls in BUILT_IN.items():
        assert connector_class(kind) is cls


def test_the_kit_fails_a_connector_that_ignores_its_cursor(tmp_path: Path) -> None:
    """The kit itself must be able to fail: a connector that re-reads everything is caught."""

    class Forgetful(FilesConnector):
        def read(self, stream, cursor):  # type: ignore[no-untyped-def]
            return super().read(stream, None)

    case = FilesCase(tmp_path)
    case.connector = Forgetful
    workdir = tmp_path / "kit"
    workdir.mkdir()
    with pytest.raises(AssertionError, match="must start from the saved cursor"):
        run_check(case, "incremental", workdir)


@pytest.fixture
def scaffolded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = scaffold("acme_crm", tmp_path)
    monkeypatch.syspath_prepend(str(root))
    return root


def test_scaffold_passes_the_kit_in_process(scaffolded: Path, httpserver: HTTPServer, tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("scaffold_conformance", scaffolded / "tests" / "test_conformance.py")
    generated = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generated)
    for index, check in enumerate(CHECKS):
        workdir = tmp_path / f"kit-{index}"
        workdir.mkdir()
        httpserver.clear()
        run_check(generated.Case(httpserver), check, workdir)


def test_scaffold_is_discovered_through_the_entry_point_group(
    scaffolded: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What `uv pip install -e .` leaves behind: a dist-info with the entry point from pyproject.toml.
    dist_info = scaffolded / "agentprovision_connector_acme_crm-0.1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: agentprovision-connector-acme-crm\nVersion: 0.1.0\n"
    )
    entry_line = next(
        line for line in (scaffolded / "pyproject.toml").read_text().splitlines() if line.startswith("acme_crm =")
    )
    name, _, target = entry_line.partition("=")
    target = target.strip().strip('"')
    (dist_info / "entry_points.txt").write_text(f"[agentprovision.connectors]\n{name.strip()} = {target}\n")
    registered_names.cache_clear()
    try:
        assert "acme_crm" in registered_names(CONNECTORS_GROUP)
        cls = connector_class("acme_crm")
        assert cls.__name__ == "AcmeCrmConnector" and cls.kind == "acme_crm"
    finally:
        registered_names.cache_clear()


@pytest.mark.slow
def test_scaffold_generated_tests_pass_as_generated(scaffolded: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(scaffolded / "tests")],
        cwd=scaffolded,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(scaffolded), str(Path(__file__).parent.parent)])},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert f"{len(CHECKS)} passed" in result.stdout


def test_scaffold_refuses_bad_names_and_existing_directories(tmp_path: Path) -> None:
    from connectors.errors import SettingsError

    with pytest.raises(SettingsError, match="not a usable connector name"):
        scaffold("Bad-Name", tmp_path)
    scaffold("crm", tmp_path)
    with pytest.raises(SettingsError, match="already exists"):
        scaffold("crm", tmp_path)


def test_files_connector_reads_csv_jsonl_and_parquet(tmp_path: Path) -> None:
    from connectors.sdk import ConnectorContext

    area = tmp_path / TENANT_FILES_DIR / "t"
    area.mkdir(parents=True)
    pl.DataFrame({"id": [1, 2], "v": ["a", "b"]}).write_parquet(area / "a.parquet")
    (area / "b.csv").write_text("id,v\n3,c\n")
    (area / "c.jsonl").write_text('{"id": 4, "v": "d"}\n')
    connector = FilesConnector(
        {"path": f"{TENANT_FILES_DIR}/t", "streams": [{"name": "rows", "pattern": "*.*", "primary_key": ["id"]}]},
        ConnectorContext("t", "i", base_dir=tmp_path),
    )
    stream = connector.stream("rows")
    ids = sorted(i for batch in connector.read(stream, None) for i in batch.table().column("id").to_pylist())
    assert ids == [1, 2, 3, 4]


@pytest.mark.parametrize("path", ["../globex", "tenant_files/globex/positions", "/etc", "tenant_files/t/../../x"])
def test_file_paths_stay_inside_the_tenants_own_area(tmp_path: Path, path: str) -> None:
    from connectors.errors import SettingsError
    from connectors.sdk import ConnectorContext

    (tmp_path / TENANT_FILES_DIR / "globex" / "positions").mkdir(parents=True)
    context = ConnectorContext("acme", "acme-drop", base_dir=tmp_path)
    with pytest.raises(SettingsError, match="outside this tenant's file area"):
        context.path(path)
    (tmp_path / TENANT_FILES_DIR / "acme").mkdir(parents=True)
    (tmp_path / TENANT_FILES_DIR / "acme" / "link").symlink_to(tmp_path / TENANT_FILES_DIR / "globex")
    with pytest.raises(SettingsError, match="outside this tenant's file area"):
        context.path("tenant_files/acme/link/positions")
    assert context.path("tenant_files/acme") == (tmp_path / TENANT_FILES_DIR / "acme").resolve()
