"""Guards on what the project installs and how its packages may depend on each other."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest
from packaging.version import Version

REPO_ROOT = Path(__file__).resolve().parent.parent
# Published supply-chain compromise: these litellm releases must never be installed.
COMPROMISED_LITELLM = {Version("1.82.7"), Version("1.82.8")}
# Plain-Python packages: testable without Dagster, and kept that way.
DAGSTER_FREE = ("agentprovision", "agents", "connectors", "governance", "dashboards")


def locked_versions() -> dict[str, Version]:
    lock = tomllib.loads((REPO_ROOT / "uv.lock").read_text())
    return {package["name"]: Version(package["version"]) for package in lock["package"] if "version" in package}


def test_lock_never_resolves_a_compromised_litellm() -> None:
    litellm = locked_versions()["litellm"]
    assert litellm not in COMPROMISED_LITELLM, f"uv.lock resolves litellm {litellm}, a compromised release"


def test_litellm_is_pinned_to_one_exact_release() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    pins = [dep for dep in project["dependencies"] if dep.startswith("litellm")]
    assert len(pins) == 1 and "==" in pins[0], pins
    assert Version(pins[0].split("==")[1]) == locked_versions()["litellm"]


def test_dbt_core_stays_below_1_12() -> None:
    # dbt-core 1.12 needs a download from outside the package index at install time.
    assert Version("1.11") <= locked_versions()["dbt-core"] < Version("1.12")


def test_installed_litellm_matches_the_lock() -> None:
    import importlib.metadata

    assert Version(importlib.metadata.version("litellm")) == locked_versions()["litellm"]


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", DAGSTER_FREE)
def test_domain_packages_do_not_import_dagster(package: str) -> None:
    offenders = [
        str(path.relative_to(REPO_ROOT))
        for path in (REPO_ROOT / package).rglob("*.py")
        if {"dagster", "dagster_dbt", "orchestration", "assets"} & _imported_modules(path)
    ]
    assert offenders == [], f"{package} must stay plain Python; these import Dagster wiring: {offenders}"


def test_nothing_depends_on_the_openai_agents_sdk() -> None:
    # Its import name is `agents`, which is ours.
    assert "openai-agents" not in locked_versions()
