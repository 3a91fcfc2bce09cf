"""The dbt project handle, built once and lazily, with its path taken from this file's location."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from dagster_dbt import DbtProject

DBT_PROJECT_DIR = Path(__file__).resolve().parent.parent / "dbt_project"


@cache
def dbt_project() -> DbtProject:
    project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
    # Parses the project under `dagster dev`; everywhere else the manifest is prepared ahead of
    # time (`make prepare`, run by both `make run` and `make test`).
    project.prepare_if_dev()
    return project
