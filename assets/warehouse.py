"""The dbt models as Dagster assets, and the published read-only copy dashboards read."""

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, dbt_assets

from agentprovision.warehouse import publish
from orchestration.dbt_project import dbt_project
from orchestration.resources import WarehouseResource

# dbt tests on the `ops` sources become asset checks on the ingestion assets that feed them.
TRANSLATOR = DagsterDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_source_tests_as_checks=True))


@dbt_assets(manifest=dbt_project().manifest_path, project=dbt_project(), dagster_dbt_translator=TRANSLATOR)
def dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource):
    yield from dbt.cli(["build"], context=context).stream()


@dg.asset(
    deps=[dbt_models],
    group_name="serving",
    kinds={"duckdb"},
    description="Atomic copy of the warehouse for the dashboards; DuckDB lets one process write at a time.",
)
def published_warehouse(warehouse: WarehouseResource) -> dg.MaterializeResult:
    path = publish(warehouse.path, warehouse.published_path)
    return dg.MaterializeResult(metadata={"path": str(path), "bytes": path.stat().st_size})
