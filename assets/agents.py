"""Agent work: one tenant partition runs that tenant's queued tasks through the agent runtime."""

from collections import Counter
from decimal import Decimal
from functools import lru_cache

import dagster as dg
from pydantic import Field
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import OperationalError

from agentprovision.config.schema import AdminConfig
from agentprovision.store.db import session_factory, transaction
from agentprovision.store.models import ConfigVersion
from agents.runtime import execute_tasks_sync
from orchestration.partitions import tenant_partitions
from orchestration.resources import OpsStoreResource

# A lost ops-store connection (a PostgreSQL failover, a SQLite lock that outlived its timeout) is
# worth retrying: tasks already claimed are not queued any more, so a retry only picks up the rest.
# Anything else (a task's own failure) is recorded on the task by the runtime and does not fail
# the run; a bad config fails it without retries.
STORE_RETRY = dg.RetryPolicy(max_retries=3, delay=5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


def applied_config(engine: Engine) -> tuple[int, AdminConfig] | None:
    """The newest applied config version and its content, validated once per version and process."""
    with transaction(session_factory(engine)) as session:
        version = session.scalar(select(func.max(ConfigVersion.version)))
    return None if version is None else (version, _validated(engine, version))


@lru_cache(maxsize=4)
def _validated(engine: Engine, version: int) -> AdminConfig:
    # Versions are immutable, so a process running many tenant runs (in-process execution, the demo)
    # validates a large config once rather than once per run.
    with transaction(session_factory(engine)) as session:
        return AdminConfig.model_validate(session.get(ConfigVersion, version).content)


class AgentWorkConfig(dg.Config):
    task_ids: list[str] | None = Field(
        default=None, description="Tasks to run (the dispatch sensor sets them); empty: every queued task."
    )
    max_concurrency: int | None = Field(default=None, description="Cap below the tenant's and agents' own limits.")


@dg.asset(
    partitions_def=tenant_partitions,
    group_name="agents",
    kinds={"python"},
    pool="agent_work",
    retry_policy=STORE_RETRY,
    description="Runs the tenant's queued agent tasks concurrently (asyncio), up to its plan's and agents' limits.",
)
def agent_work(
    context: dg.AssetExecutionContext, config: AgentWorkConfig, ops_store: OpsStoreResource
) -> dg.MaterializeResult:
    tenant_id = context.partition_key
    engine = ops_store.engine
    try:
        applied = applied_config(engine)
        if applied is None:
            raise dg.Failure(
                "no admin config has been applied yet; run `agentprovision apply config/`", allow_retries=False
            )
        version, admin_config = applied
        outcomes = execute_tasks_sync(
            admin_config,
            engine,
            tenant_id,
            config.task_ids,
            max_concurrency=config.max_concurrency,
            orchestrator_run_id=context.run_id,
        )
    except OperationalError:
        raise  # STORE_RETRY retries the step
    except dg.Failure:
        raise
    except Exception as exc:
        # Not a store outage: retrying would fail the same way, so fail once with the reason.
        raise dg.Failure(f"agent work for {tenant_id} failed: {exc}", allow_retries=False) from exc
    statuses = Counter(outcome.status for outcome in outcomes)
    cost = sum((Decimal(str(outcome.cost_usd or 0)) for outcome in outcomes), Decimal(0))
    context.log.info(f"{tenant_id}: {len(outcomes)} task(s): {dict(statuses)}; cost {cost} USD")
    return dg.MaterializeResult(
        metadata={
            "tasks": len(outcomes),
            **{f"tasks_{status}": count for status, count in sorted(statuses.items())},
            "cost_usd": float(cost),
            "config_version": version,
        }
    )
