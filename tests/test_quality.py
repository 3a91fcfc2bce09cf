"""Great Expectations suites on the raw tables: a clean load passes, each kind of bad data fails the right check."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from agentprovision.quality import SuiteResult, run_raw_event_suites
from agentprovision.settings import load_settings
from agentprovision.warehouse import ensure_raw_schema

NOW = datetime(2026, 10, 15, 12, 0, tzinfo=UTC)
TENANTS = {"acme", "globex"}
LOADED = NOW - timedelta(minutes=5)


def event(seq: int, tenant: str | None, kind: str, name: str, at: datetime, payload: dict, loaded=LOADED) -> tuple:
    return (
        seq,
        f"ev-{seq}",
        tenant,
        kind,
        name,
        at,
        NOW - timedelta(minutes=6),  # recorded_at: when the platform wrote it down, sane in every case here
        None,
        None,
        json.dumps(payload),
        loaded,
    )


def usage(seq: int, tenant: str = "acme", cost: object = "0.0125", at: datetime | None = None, **tokens) -> tuple:
    payload = {"prompt_tokens": 100, "completion_tokens": 20, "cached_tokens": 0, "reasoning_tokens": 0}
    payload.update(tokens)
    payload["cost_usd"] = cost
    return event(seq, tenant, "usage", "model_call", at or NOW - timedelta(hours=1), payload)


CLEAN = [
    usage(1),
    usage(2, tenant="globex", cost="1.5"),
    event(3, "acme", "run", "run_finished", NOW - timedelta(minutes=30), {"cost_usd": "0.2", "prompt_tokens": 5}),
    event(4, "acme", "policy", "refused", NOW - timedelta(minutes=20), {"action": "block", "reason": "pii"}),
    event(5, None, "alert", "sync_failed", NOW - timedelta(minutes=10), {}),  # platform event: no tenant
]


def build(path: Path, rows: list[tuple], invoices: list[tuple] = ()) -> Path:
    with duckdb.connect(str(path)) as con:
        ensure_raw_schema(con)
        if rows:
            con.executemany("INSERT INTO raw.events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        if invoices:
            con.executemany("INSERT INTO raw.provider_invoice_lines VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", invoices)
    return path


def suites(path: Path, **kwargs) -> dict[str, SuiteResult]:
    return {result.name: result for result in run_raw_event_suites(path, TENANTS, NOW, **kwargs)}


def failures(result: SuiteResult) -> set[tuple[str, str | None]]:
    return {(outcome.expectation, outcome.column) for outcome in result.failed}


INVOICE = ("2026-10-01", "openai", "gpt-4o", "acme", "12.5", 1000, 100, "INV-1", NOW.replace(tzinfo=None))


def test_clean_load_passes_every_suite(tmp_path: Path) -> None:
    results = suites(build(tmp_path / "w.duckdb", CLEAN, [INVOICE]))
    assert set(results) == {
        "raw.events.schema",
        "raw.events.values",
        "raw.events.freshness",
        "raw.provider_invoice_lines.schema",
        "raw.provider_invoice_lines.values",
    }
    assert all(r.success for r in results.values()), [r.summary() for r in results.values() if not r.success]
    values = results["raw.events.values"]
    assert values.rows == 5 and len(values.results) >= 15 and values.failed_count == 0


def _with(replacement: tuple) -> list[tuple]:
    return [*CLEAN[:1], replacement, *CLEAN[2:]]


BAD_EVENTS: dict[str, tuple] = {  # case: (rows, *the (expectation, column) pairs that must fail)
    "negative cost": (_with(usage(2, cost="-0.01")), ("expect_column_values_to_be_between", "cost_usd")),
    # an unreadable cost is also a usage event without a cost: both say so
    "cost not a number": (
        _with(usage(2, cost="free")),
        ("expect_column_values_to_be_in_set", "cost_usd_is_number"),
        ("expect_column_values_to_not_be_null", "cost_usd"),
    ),
    "usage without a cost": (_with(usage(2, cost=None)), ("expect_column_values_to_not_be_null", "cost_usd")),
    "negative tokens": (
        _with(usage(2, completion_tokens=-5)),
        ("expect_column_values_to_be_between", "completion_tokens"),
    ),
    "unknown tenant": (_with(usage(2, tenant="umbrella")), ("expect_column_values_to_be_in_set", "tenant_id")),
    "future timestamp": (
        _with(usage(2, at=NOW + timedelta(hours=2))),
        ("expect_column_values_to_be_between", "occurred_at"),
    ),
    "before 2020": (
        _with(usage(2, at=datetime(2019, 12, 31, tzinfo=UTC))),
        ("expect_column_values_to_be_between", "occurred_at"),
    ),
    "duplicate event id": (CLEAN + [CLEAN[0]], ("expect_column_values_to_be_unique", "event_id")),
    "unknown kind": (
        _with(event(2, "acme", "gossip", "x", NOW - timedelta(hours=1), {})),
        ("expect_column_values_to_be_in_set", "kind"),
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_EVENTS))
def test_each_bad_event_fails_the_right_expectation(tmp_path: Path, case: str) -> None:
    rows, *expected = BAD_EVENTS[case]
    results = suites(build(tmp_path / "w.duckdb", rows))
    values = results["raw.events.values"]
    assert not values.success
    assert failures(values) == set(expected), values.summary()
    assert results["raw.events.schema"].success  # the layout itself is fine
    duplicates = 2 if case == "duplicate event id" else 1  # both copies of a duplicate count
    for broken in values.failed:
        assert broken.unexpected_count == duplicates, broken  # exactly the bad rows, and they are shown
        assert "found e.g." in broken.detail


def test_missing_column_fails_the_schema_suite(tmp_path: Path) -> None:
    path = build(tmp_path / "w.duckdb", CLEAN)
    with duckdb.connect(str(path)) as con:
        con.execute("ALTER TABLE raw.events DROP COLUMN recorded_at")
        con.execute("ALTER TABLE raw.events ALTER COLUMN seq TYPE VARCHAR")
    schema = suites(path)["raw.events.schema"]
    assert failures(schema) == {
        ("expect_column_values_to_be_in_set", "column_name"),
        ("expect_column_pair_values_to_be_equal", None),
    }
    pair = next(o for o in schema.failed if o.expectation == "expect_column_pair_values_to_be_equal")
    assert pair.unexpected_count == 2  # recorded_at missing, seq retyped


def test_stale_events_fail_freshness_only(tmp_path: Path) -> None:
    path = build(tmp_path / "w.duckdb", CLEAN)
    later = NOW + timedelta(hours=30)
    results = {r.name: r for r in run_raw_event_suites(path, TENANTS, later, freshness_hours=24)}
    assert not results["raw.events.freshness"].success
    assert failures(results["raw.events.freshness"]) == {("expect_column_max_to_be_between", "latest_occurred_at")}
    assert results["raw.events.values"].success
    assert suites(path, freshness_hours=24)["raw.events.freshness"].success


def test_only_the_newest_load_is_checked_unless_asked(tmp_path: Path) -> None:
    old_bad = event(
        9, "umbrella", "usage", "model_call", NOW - timedelta(days=2), {"cost_usd": "1"}, LOADED - timedelta(days=1)
    )
    path = build(tmp_path / "w.duckdb", [*CLEAN, old_bad])
    assert suites(path)["raw.events.values"].success  # checked when it was loaded; not re-read every pass
    everything = suites(path, batch="all")["raw.events.values"]
    assert failures(everything) == {("expect_column_values_to_be_in_set", "tenant_id")}


def test_empty_warehouse_passes_and_settings_are_accepted(tmp_path: Path) -> None:
    settings = load_settings(
        {"AGENTPROVISION_STATE_DIR": str(tmp_path), "AGENTPROVISION_DUCKDB_PATH": str(tmp_path / "w.duckdb")}
    )
    build(settings.duckdb_path, [])
    results = run_raw_event_suites(settings, TENANTS, NOW)
    assert all(r.success for r in results), [r.summary() for r in results]


BAD_INVOICES: dict[str, tuple[tuple, str]] = {
    "negative cost": (INVOICE[:4] + ("-1",) + INVOICE[5:], "cost_usd"),
    "unknown tenant": (INVOICE[:3] + ("umbrella",) + INVOICE[4:], "tenant_id"),
    "future date": (("2027-01-01",) + INVOICE[1:], "usage_date"),
}


@pytest.mark.parametrize("case", sorted(BAD_INVOICES))
def test_bad_invoice_lines_fail(tmp_path: Path, case: str) -> None:
    row, column = BAD_INVOICES[case]
    values = suites(build(tmp_path / "w.duckdb", CLEAN, [INVOICE, row]))["raw.provider_invoice_lines.values"]
    assert {c for _, c in failures(values)} == {column}, values.summary()


def test_bad_input_is_explained(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="run a pipeline pass first"):
        run_raw_event_suites(tmp_path / "missing.duckdb", TENANTS, NOW)


def test_runs_inside_the_writing_process(tmp_path: Path) -> None:
    """A Dagster asset check may run where the writer's connection is still open: no configuration clash."""
    path = build(tmp_path / "w.duckdb", CLEAN)
    with duckdb.connect(str(path)):
        assert all(r.success for r in run_raw_event_suites(path, TENANTS, NOW))
