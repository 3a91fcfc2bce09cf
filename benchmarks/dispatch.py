"""What Dagster dispatch costs per tenant partition, against a plain loop running the same tasks.

Setup: N tenants (cloned from the example config's first tenant, one agent each, sandbox models at
zero latency and no injected faults), each with T queued tasks, in a SQLite ops store.

  plain loop  one process calls `execute_tasks_sync` tenant after tenant (tasks of a tenant
              concurrently, up to its plan's limit): the work itself, with no orchestration.
  dispatch    the dispatch sensor is evaluated against a Dagster instance (planning, budget check,
              run requests), then every requested run executes as a `run_agent_tasks` run of the
              real Definitions, in process, recorded in the instance like any run; repeated until
              no task is queued. Timed from the first sensor evaluation to the last task done.

Both run tenants one after another, so the difference is orchestration: sensor ticks, run and
event records in the Dagster instance, resource set-up, step execution. Runs execute in process:
the per-run process start of Dagster's default run launcher (a fresh Python importing Dagster,
LiteLLM and the platform, seconds each) is a deployment choice measured separately, not here.

    uv run python benchmarks/dispatch.py [--tenants 200] [--tasks 10] [--no-write]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

DOC = REPO_ROOT / "docs" / "benchmarks.md"
SECTION = "## Dispatch overhead"


def markers(storage: str) -> tuple[str, str]:
    return f"<!-- dispatch-{storage}:begin -->", f"<!-- dispatch-{storage}:end -->"


GOAL_SECONDS = 0.5


def build_config(tenants: int):  # type: ignore[no-untyped-def]
    from agentprovision.config import load_config_dir
    from agentprovision.config.schema import AdminConfig

    example = load_config_dir(REPO_ROOT / "config").config.model_dump(mode="json")
    for deployment in example["models"]["model_list"]:
        if deployment["model_info"].get("sandbox") is not None:
            deployment["model_info"]["sandbox"] = {"latency_ms": 0}
    template = next(tf for tf in example["tenants"] if tf["tenant"]["id"] == "acme")
    agent = next(a for a in template["agents"] if a["id"] == "acme-qa-triage")
    files = []
    for n in range(tenants):
        tenant_id = f"bench-{n:04d}"
        tenant_file = copy.deepcopy(template)
        tenant_file["tenant"]["id"] = tenant_id
        tenant_file["tenant"]["display_name"] = f"Bench tenant {n}"
        tenant_file["tenant"]["budget"] = {"monthly_hard_usd": 100000}
        tenant_file["users"], tenant_file["connectors"], tenant_file["alert_channels"] = [], [], []
        bench_agent = copy.deepcopy(agent)
        bench_agent.update(id=f"{tenant_id}-agent", triggers=[], schedule=None, budget=None)
        bench_agent["limits"]["max_concurrent_tasks"] = tenant_file["tenant"]["max_concurrent_runs"]
        tenant_file["agents"] = [bench_agent]
        files.append(tenant_file)
    example["tenants"] = files
    example["platform"]["platform"]["budget"] = None
    return AdminConfig.model_validate(example)


def seeded_store(directory: Path, config, tasks: int):  # type: ignore[no-untyped-def]
    from agentprovision.apply import apply_config
    from agentprovision.store.db import make_engine, migrate, session_factory, transaction
    from agentprovision.tasks import queue_task

    url = f"sqlite:///{directory / 'ops.db'}"
    engine = make_engine(url)
    migrate(engine)
    with transaction(session_factory(engine)) as session:
        apply_config(session, config, actor="benchmark@example.com", source="benchmarks/dispatch.py")
    with transaction(session_factory(engine)) as session:
        for tenant_file in config.tenants:
            for _ in range(tasks):
                queue_task(
                    session,
                    tenant_id=tenant_file.tenant.id,
                    agent_id=tenant_file.agents[0].id,
                    source="cli",
                    idempotency_key=str(uuid.uuid4()),
                    task_input={"instructions": "Triage the newest QA issues. [no-tools]"},
                )
    return engine, url


def task_counts(engine) -> dict[str, int]:  # type: ignore[no-untyped-def]
    from sqlalchemy import func, select

    from agentprovision.store.models import Task

    with engine.connect() as connection:
        return dict(connection.execute(select(Task.status, func.count()).group_by(Task.status)).all())


class Clock:
    """Wall and CPU seconds (this process; every run executes in it). CPU time is the steadier figure
    on a shared machine, where other people's load stretches wall time."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def plain_loop(config, engine) -> Clock:  # type: ignore[no-untyped-def]
    from agents.runtime import execute_tasks_sync

    with Clock() as clock:
        for tenant_file in config.tenants:
            execute_tasks_sync(config, engine, tenant_file.tenant.id)
    return clock


@contextlib.contextmanager
def dagster_instance(storage: str, home: Path):  # type: ignore[no-untyped-def]
    """The embedded default's instance shape (SQLite, an event-log file per run) or production's (PostgreSQL)."""
    import dagster as dg

    if storage == "sqlite":
        with dg.instance_for_test(temp_dir=str(home)) as instance:
            yield instance
        return
    import psycopg

    admin = os.environ.get("AGENTPROVISION_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"dagster_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        # dagster-postgres needs psycopg2; SQLAlchemy 2.1 would pick psycopg 3 for a bare postgresql:// URL.
        url = admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg2://") + "/" + name
        with dg.instance_for_test(overrides={"storage": {"postgres": {"postgres_url": url}}}) as instance:
            yield instance
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def dispatched(url: str, engine, tenants: int, storage: str = "sqlite", home: Path | None = None):  # type: ignore[no-untyped-def]
    import dagster as dg

    from orchestration.definitions import defs
    from orchestration.jobs import agent_work_job
    from orchestration.resources import DispatchResource, OpsStoreResource
    from orchestration.sensors import dispatch_sensor

    resources = {
        "ops_store": OpsStoreResource(database_url=url),
        "dispatch": DispatchResource(global_runs=tenants, batch_size=50),
    }
    job = defs.resolve_job_def(agent_work_job.name)
    quiet = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
    runs = ticks = 0
    cursor = None
    with dagster_instance(storage, home or Path(tempfile.mkdtemp())) as instance, Clock() as clock:
        while True:
            context = dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor)
            result = dispatch_sensor(context)
            ticks += 1
            cursor = result.cursor
            for request in result.dynamic_partitions_requests:
                instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
            if not result.run_requests:
                break
            for request in result.run_requests:
                outcome = job.execute_in_process(
                    instance=instance,
                    partition_key=request.partition_key,
                    run_config={**quiet, **request.run_config},
                    tags=request.tags,
                    raise_on_error=True,
                )
                assert outcome.success
                runs += 1
    return clock, runs, ticks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, default=200)
    parser.add_argument("--tasks", type=int, default=10, help="queued tasks per tenant")
    parser.add_argument(
        "--dagster-storage",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="Dagster instance storage: the embedded default's SQLite, or PostgreSQL as in deploy/dagster.yaml",
    )
    parser.add_argument("--no-write", action="store_true", help="print the figures, leave docs/benchmarks.md alone")
    args = parser.parse_args()
    if args.tenants < 1 or args.tasks < 1:
        parser.error("--tenants and --tasks must be at least 1")

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        os.environ["AGENTPROVISION_STATE_DIR"] = str(root / "state")
        os.environ["DAGSTER_HOME"] = str(root / "dagster")
        (root / "dagster").mkdir()
        os.environ.pop("AGENTPROVISION_DATABASE_URL", None)
        config = build_config(args.tenants)
        total = args.tenants * args.tasks
        os.environ["AGENTPROVISION_DUCKDB_PATH"] = str(root / "warehouse.duckdb")

        # Warm-up on one tenant, both paths: imports, LiteLLM's tables and the dbt manifest are paid
        # here, not by whichever path happens to run first.
        warm_config = build_config(1)
        for name in ("warm-loop", "warm-dispatch"):
            (root / name).mkdir()
            engine, url = seeded_store(root / name, warm_config, 1)
            os.environ["AGENTPROVISION_DATABASE_URL"] = url
            if name == "warm-loop":
                plain_loop(warm_config, engine)
            else:
                dispatched(url, engine, 1, args.dagster_storage, root / "warm-dagster")
            engine.dispose()

        (root / "loop").mkdir()
        engine, _ = seeded_store(root / "loop", config, args.tasks)
        loop = plain_loop(config, engine)
        loop_counts = task_counts(engine)
        engine.dispose()

        (root / "dispatch").mkdir()
        engine, url = seeded_store(root / "dispatch", config, args.tasks)
        os.environ["AGENTPROVISION_DATABASE_URL"] = url
        dispatch, runs, ticks = dispatched(url, engine, args.tenants, args.dagster_storage, root / "dagster-home")
        dispatch_counts = task_counts(engine)
        engine.dispose()

    for name, counts in (("plain loop", loop_counts), ("dispatch", dispatch_counts)):
        if counts.get("succeeded", 0) != total:
            sys.exit(f"{name}: expected {total} succeeded tasks, got {counts}")
    n = args.tenants
    wall_overhead, cpu_overhead = (dispatch.wall - loop.wall) / n, (dispatch.cpu - loop.cpu) / n
    lines = [
        f"{n} tenants x {args.tasks} tasks = {total} tasks, sandbox at zero latency, SQLite ops store; "
        f"{runs} runs from {ticks} sensor evaluations; Dagster storage: {args.dagster_storage}. Runs execute in "
        "process (no per-run process start).",
        "",
        "| path | wall s | CPU s | tasks/s (wall) | wall s per tenant | CPU s per tenant |",
        "|---|---:|---:|---:|---:|---:|",
        f"| plain loop | {loop.wall:.2f} | {loop.cpu:.2f} | {total / loop.wall:.1f} | {loop.wall / n:.3f} | "
        f"{loop.cpu / n:.3f} |",
        f"| dispatch (sensor + Dagster runs) | {dispatch.wall:.2f} | {dispatch.cpu:.2f} | "
        f"{total / dispatch.wall:.1f} | {dispatch.wall / n:.3f} | {dispatch.cpu / n:.3f} |",
        "",
        f"Orchestration overhead per tenant partition: {wall_overhead:.3f} s wall, {cpu_overhead:.3f} s CPU "
        f"(goal < {GOAL_SECONDS} s: {'met' if max(wall_overhead, cpu_overhead) < GOAL_SECONDS else 'not met'}); "
        f"dispatch / plain loop = {dispatch.wall / loop.wall:.2f} wall, {dispatch.cpu / loop.cpu:.2f} CPU.",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_doc(text, args.dagster_storage)


def write_doc(text: str, storage: str) -> None:
    """Replace this storage's block under the dispatch section, adding the section when missing."""
    begin, end = markers(storage)
    block = f"{begin}\n{text}\n{end}"
    doc = DOC.read_text()
    if begin in doc and end in doc:
        doc = doc[: doc.index(begin)] + block + doc[doc.index(end) + len(end) :]
    elif SECTION in doc:
        doc = doc.rstrip("\n") + "\n\n" + block + "\n"
    else:
        doc = doc.rstrip("\n") + (
            f"\n\n{SECTION}\n\n"
            "`uv run python benchmarks/dispatch.py [--dagster-storage sqlite|postgres]` runs the same queued tasks\n"
            "through a plain loop and through the dispatch sensor and tenant-partitioned Dagster runs. The goal\n"
            "set in the issue: orchestration overhead under 0.5 s per tenant partition.\n\n" + block + "\n"
        )
    DOC.write_text(doc)


if __name__ == "__main__":
    main()
