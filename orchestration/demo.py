"""The headless demo: seed the embedded default from config, then run the full pass through Dagster.

The run is recorded in DAGSTER_HOME, so it shows in the Dagster UI exactly like a scheduled one.
Running it again applies nothing new (the config is unchanged) and ingests only what is new.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import time

import duckdb
from sqlalchemy import Engine

from agentprovision.apply import apply_config
from agentprovision.config import load_config_dir
from agentprovision.serve import server_environment
from agentprovision.settings import Settings
from agentprovision.store.db import open_store, session_factory, transaction
from connectors.errors import ConnectorError
from connectors.sync import SyncOptions, sync_all

SEED_ACTOR = "agentprovision-demo"


def run(settings: Settings, once: bool, interval: int) -> None:
    while True:
        code = run_pass(settings)
        if once or code != 0:
            sys.exit(code)
        time.sleep(interval)


def run_pass(settings: Settings) -> int:
    os.environ.update(server_environment(settings))

    result = load_config_dir(settings.config_dir)
    if not result.ok:
        for issue in result.issues:
            print(issue.render(), file=sys.stderr)
        print(f"\nthe config in {settings.config_dir} is invalid; nothing was seeded", file=sys.stderr)
        return 2
    engine = open_store(settings.database_url)
    with transaction(session_factory(engine)) as session:
        applied = apply_config(
            session, result.config, actor=SEED_ACTOR, source=str(settings.config_dir), channel="demo"
        )
    print(f"config: {'applied as version ' + str(applied.version) if applied.changed else 'unchanged'}")
    print(sync_local_integrations(engine, settings))

    # Imported here so that loading definitions (which parses nothing, but builds resources from
    # the environment) happens after the environment above is in place.
    from dagster import DagsterInstance

    from orchestration.definitions import defs

    # dbt's progress lines go to a buffer to keep the summary short; they are shown if the pass fails,
    # and every run's full logs stay in the Dagster UI.
    progress = io.StringIO()
    with DagsterInstance.get() as instance, contextlib.redirect_stdout(progress):
        outcome = defs.resolve_job_def("full_pass").execute_in_process(
            instance=instance,
            raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        )
    if not outcome.success:
        print(progress.getvalue()[-4000:], file=sys.stderr)
        failed = [e.step_key for e in outcome.all_events if e.is_step_failure]
        print(
            f"pipeline pass failed at {', '.join(failed) or 'an unknown step'}; "
            f"see run {outcome.run_id} in the Dagster UI",
            file=sys.stderr,
        )
        return 1
    print(f"pipeline: run {outcome.run_id} succeeded")
    print(summary(settings))
    return 0


def sync_local_integrations(engine: Engine, settings: Settings) -> str:
    """Sync the integrations that need no network (files, docs), so triggers queue real tasks."""
    outcomes = sync_all(engine, local_only=True, options=SyncOptions(base_dir=settings.config_dir))
    failed = [
        f"{tenant}/{integration}: {outcome}"
        for tenant, integration, outcome in outcomes
        if isinstance(outcome, ConnectorError)
    ]
    synced = [outcome for _, _, outcome in outcomes if not isinstance(outcome, ConnectorError)]
    line = (
        f"integrations: {len(synced)} synced, {sum(r.inserted for r in synced)} new records, "
        f"{sum(r.tasks_created for r in synced)} tasks queued by triggers"
    )
    return line + "".join(f"\n  failed {item}" for item in failed)


def summary(settings: Settings) -> str:
    with duckdb.connect(str(settings.published_duckdb_path), read_only=True) as con:
        tenants = con.execute("SELECT count(*) FROM marts.dim_tenants").fetchone()[0]
        agents = con.execute("SELECT count(*) FROM marts.dim_agents").fetchone()[0]
        audit = con.execute("SELECT count(*) FROM marts.fct_audit_events").fetchone()[0]
    return (
        f"warehouse: {tenants} tenants, {agents} agents, {audit} audit events "
        f"published at {settings.published_duckdb_path}"
    )
