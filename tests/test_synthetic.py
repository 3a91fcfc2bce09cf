"""The synthetic event generator: raw.events layout, realism, consistency with the config, determinism."""

from __future__ import annotations

import json
from datetime import date

import duckdb
import polars as pl
import pytest
from sqlalchemy import Engine, func, select

from agentprovision.config import load_config_dir
from agentprovision.store.models import Event
from agentprovision.synthetic import EVENTS_SCHEMA, generate_events, write_to_store
from agentprovision.warehouse import RAW_SCHEMA, ensure_raw_schema


def frame(**kwargs: object) -> pl.DataFrame:
    return pl.concat([pl.from_arrow(t) for t in generate_events(**kwargs)])


def test_batches_add_up_to_exactly_the_events_asked_for_in_raw_layout() -> None:
    tables = list(generate_events(4, 3, 14, 12_345, seed=3, batch_events=5_000, start=date(2026, 10, 1)))
    assert [t.num_rows for t in tables] == [5_000, 5_000, 2_345]
    assert all(t.schema == EVENTS_SCHEMA for t in tables)
    events = pl.concat([pl.from_arrow(t) for t in tables])
    assert events["seq"].to_list() == list(range(1, 12_346))
    assert events["event_id"].n_unique() == 12_345
    assert events["event_id"].str.len_chars().max() <= 36  # fits the ops store's event_id column
    assert set(events["tenant_id"]) == {f"tenant-{i:04d}" for i in range(1, 5)}
    assert events["occurred_at"].dt.date().min() >= date(2026, 10, 1)
    assert events["occurred_at"].dt.date().max() <= date(2026, 10, 15)


def test_the_raw_events_table_takes_the_batches_as_they_are(tmp_path) -> None:
    with duckdb.connect(str(tmp_path / "wh.duckdb")) as con:
        ensure_raw_schema(con)
        for batch in generate_events(2, 2, 7, 3_000, seed=1):  # noqa: B007 - read by name in the SQL
            con.execute(f"INSERT INTO {RAW_SCHEMA}.events SELECT * FROM batch")
        assert con.execute("SELECT count(*), count(DISTINCT event_id) FROM raw.events").fetchone() == (3_000, 3_000)


def test_the_same_seed_gives_the_same_events_and_another_seed_does_not() -> None:
    a = frame(tenants=2, agents_per_tenant=2, days=7, events=2_000, seed=11, start=date(2026, 10, 1))
    b = frame(tenants=2, agents_per_tenant=2, days=7, events=2_000, seed=11, start=date(2026, 10, 1))
    c = frame(tenants=2, agents_per_tenant=2, days=7, events=2_000, seed=12, start=date(2026, 10, 1))
    assert a.equals(b)
    assert not a.select("payload").equals(c.select("payload"))


def test_events_look_like_a_real_week_of_agent_work() -> None:
    events = frame(tenants=3, agents_per_tenant=3, days=28, events=60_000, seed=5, start=date(2026, 10, 5))
    counts = dict(events.group_by("kind").len().iter_rows())
    assert set(counts) == {"usage", "tool", "policy", "run"}

    # Weekday seasonality: a weekday carries far more events than a weekend day.
    per_day = events.group_by(pl.col("occurred_at").dt.weekday().alias("weekday")).len()
    by_weekday = dict(per_day.iter_rows())
    assert min(by_weekday[d] for d in range(1, 6)) > 2 * max(by_weekday[6], by_weekday[7])

    usage = [json.loads(p) for p in events.filter(pl.col("kind") == "usage")["payload"]]
    failed = [u for u in usage if u["status"] == "error"]
    fallbacks = [u for u in usage if u["fallback_depth"] > 0]
    assert 0.03 < len(failed) / len(usage) < 0.15
    assert 0.02 < len(fallbacks) / len(usage) < 0.12 and all(u["status"] == "ok" for u in fallbacks)
    assert all(u["cost_usd"] == "0.00000000" and u["prompt_tokens"] == 0 for u in failed)
    assert {u["guardrails"]["prompt"]["action"] for u in usage} == {"clean", "allowed", "masked"}
    assert {u["sandbox"] for u in usage} == {True, False}

    finished = [json.loads(p) for p in events.filter(pl.col("name") == "run_finished")["payload"]]
    assert {f["status"] for f in finished} >= {"succeeded", "failed"}
    assert all(f["steps"] == f["llm_calls"] + f["tool_calls"] for f in finished)
    assert sum(f["outcomes"]["ticket_opened"] for f in finished) > 0


def test_run_totals_match_the_calls_they_made() -> None:
    events = frame(tenants=1, agents_per_tenant=2, days=3, events=5_000, seed=9, start=date(2026, 10, 1))
    usage = events.filter(pl.col("kind") == "usage").with_columns(
        pl.col("payload").str.json_path_match("$.cost_usd").cast(pl.Decimal(18, 8)).alias("cost")
    )
    per_run = dict(usage.group_by("run_id").agg(pl.col("cost").sum()).iter_rows())
    finished = events.filter(pl.col("name") == "run_finished").with_columns(
        pl.col("payload").str.json_path_match("$.cost_usd").cast(pl.Decimal(18, 8)).alias("cost")
    )
    checked = 0
    for run_id, cost in finished.select("run_id", "cost").iter_rows():
        if run_id in per_run:
            assert per_run[run_id] == cost
            checked += 1
    assert checked > 100


def test_with_the_example_config_events_use_its_tenants_agents_and_models() -> None:
    config = load_config_dir("config").config
    events = frame(days=7, events=3_000, seed=2, config=config, start=date(2026, 10, 1))
    agents = {a.id for tf in config.tenants for a in tf.agents if a.status == "active"}
    assert set(events["agent_id"]) <= agents and len(set(events["agent_id"])) == len(agents)
    deployments = {d.model_info.id for d in config.models.model_list}
    usage = [json.loads(p) for p in events.filter(pl.col("kind") == "usage")["payload"]]
    assert {u["deployment_id"] for u in usage} <= deployments
    assert all(u["sandbox"] and u["provider"] == "sandbox" for u in usage)
    # Residency: globex is an EU tenant and only ever reaches EU deployments.
    globex = events.filter(pl.col("tenant_id") == "globex", pl.col("kind") == "usage")
    assert {json.loads(p)["region"] for p in globex["payload"]} == {"eu"}


def test_write_to_store_goes_through_the_event_writer(store: Engine) -> None:
    config = load_config_dir("config").config
    assert write_to_store(store, config, days=3, events=400, seed=4) == 400
    with store.connect() as con:
        assert con.execute(select(func.count()).select_from(Event)).scalar() == 400
        kinds = {row[0] for row in con.execute(select(Event.kind).distinct())}
    assert kinds == {"usage", "tool", "policy", "run"}


@pytest.mark.parametrize("bad", [{"days": 0}, {"events": -1}, {"tenants": 0}])
def test_bad_sizes_are_refused_with_a_clear_message(bad: dict) -> None:
    args = {"tenants": 1, "agents_per_tenant": 1, "days": 1, "events": 10, "seed": 0, **bad}
    with pytest.raises(ValueError, match="at least|not negative"):
        list(generate_events(**args))
