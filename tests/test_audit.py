"""The audit trail is append-only in the database, and any tampering is found at the right record."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import Engine, delete, select, text, update
from sqlalchemy.exc import DatabaseError
from typer.testing import CliRunner

from agentprovision.cli import app
from agentprovision.store import models as m
from agentprovision.store.audit import append_audit, chain_heads, chain_of, verify_chain
from agentprovision.store.db import session_factory, transaction

TENANTS = ["acme", "globex", None]


def fill(store: Engine, records: int = 36, seed: int = 7) -> None:
    rng = random.Random(seed)
    factory = session_factory(store)
    for index in range(records):
        with transaction(factory) as session:
            append_audit(
                session,
                actor=f"user{index}@example.com",
                action="test.action",
                target_type="thing",
                target_id=str(index),
                tenant_id=rng.choice(TENANTS),
                details={"n": index},
            )


def records_by_chain(session) -> dict[str, list[m.AuditRecord]]:  # type: ignore[no-untyped-def]
    chains: dict[str, list[m.AuditRecord]] = {}
    for record in session.scalars(select(m.AuditRecord).order_by(m.AuditRecord.seq)):
        chains.setdefault(chain_of(record.tenant_id), []).append(record)
    return chains


def allow_tampering(session) -> None:  # type: ignore[no-untyped-def]
    # An attacker with owner rights must switch off the append-only triggers first.
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("ALTER TABLE audit_records DISABLE TRIGGER USER"))
    else:
        session.execute(text("DROP TRIGGER audit_records_no_update"))
        session.execute(text("DROP TRIGGER audit_records_no_delete"))


@pytest.mark.parametrize("statement", ["update", "delete"])
def test_the_database_refuses_changes_to_audit_records(store: Engine, statement: str) -> None:
    fill(store, records=3)
    change = update(m.AuditRecord).values(actor="x@example.com") if statement == "update" else delete(m.AuditRecord)
    with pytest.raises(DatabaseError, match="append-only"), store.begin() as connection:
        connection.execute(change)
    with transaction(session_factory(store)) as session:
        assert verify_chain(session).intact


def test_random_tampering_is_caught_at_the_right_record(store: Engine) -> None:
    fill(store)
    factory = session_factory(store)
    with transaction(factory) as session:
        anchors = chain_heads(session)
        assert verify_chain(session, anchors).intact
    rng = random.Random(2026)
    cases = 0
    for kind in ["edit", "delete", "reorder", "truncate"] * 6:
        session = factory()
        try:
            allow_tampering(session)
            chains = records_by_chain(session)
            chain = rng.choice([name for name, records in chains.items() if len(records) >= 4])
            records = chains[chain]
            if kind == "edit":
                victim = rng.choice(records)
                session.execute(update(m.AuditRecord).where(m.AuditRecord.seq == victim.seq).values(details={"n": -1}))
                expected = (chain, victim.seq)
            elif kind == "delete":
                position = rng.randrange(len(records) - 1)  # not the last: that is truncation
                session.execute(delete(m.AuditRecord).where(m.AuditRecord.seq == records[position].seq))
                expected = (chain, records[position + 1].seq)
            elif kind == "reorder":
                first, second = sorted(rng.sample(range(len(records)), 2))
                a, b = records[first].seq, records[second].seq
                session.execute(update(m.AuditRecord).where(m.AuditRecord.seq == a).values(seq=-1))
                session.execute(update(m.AuditRecord).where(m.AuditRecord.seq == b).values(seq=a))
                session.execute(update(m.AuditRecord).where(m.AuditRecord.seq == -1).values(seq=b))
                expected = (chain, a)
            else:
                cut = rng.randrange(1, len(records) - 1)
                session.execute(delete(m.AuditRecord).where(m.AuditRecord.seq.in_([r.seq for r in records[-cut:]])))
                expected = (chain, records[-1].seq)
            session.expire_all()
            result = verify_chain(session, anchors)
            assert not result.intact, kind
            assert (result.chain, result.first_bad_seq) == expected, (kind, result)
            cases += 1
        finally:
            session.rollback()
            session.close()
    assert cases == 24
    with transaction(factory) as session:  # every tampering was rolled back
        assert verify_chain(session, anchors).intact


def test_audit_verify_command(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from agentprovision.store.db import make_engine, migrate

    url = f"sqlite:///{tmp_path / 'ops.db'}"
    monkeypatch.setenv("AGENTPROVISION_DATABASE_URL", url)
    engine = make_engine(url)
    migrate(engine)
    fill(engine, records=6)
    runner = CliRunner()
    good = runner.invoke(app, ["audit", "verify"])
    assert good.exit_code == 0 and "audit trail intact: 6 records" in good.output

    with engine.begin() as connection:
        connection.execute(text("DROP TRIGGER audit_records_no_update"))
        connection.execute(text("UPDATE audit_records SET actor = 'intruder@example.com' WHERE seq = 4"))
    bad = runner.invoke(app, ["audit", "verify"])
    assert bad.exit_code == 3
    assert "BROKEN" in bad.output and "seq 4" in bad.output and "does not match its hash" in bad.output


def test_scheduled_head_export_catches_a_cut_off_tail(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import dagster as dg

    from agentprovision.store.db import make_engine, migrate
    from assets.governance import audit_chain_heads
    from orchestration.resources import OpsStoreResource

    url = f"sqlite:///{tmp_path / 'ops.db'}"
    monkeypatch.setenv("AGENTPROVISION_STATE_DIR", str(tmp_path))
    engine = make_engine(url)
    migrate(engine)
    fill(engine, records=8)
    resources = {"ops_store": OpsStoreResource(database_url=url)}
    assert dg.materialize([audit_chain_heads], resources=resources).success
    assert len(list((tmp_path / "audit_heads").glob("chain_heads_*.json"))) == 1

    with engine.begin() as connection:  # an attacker cuts the newest record off
        connection.execute(text("DROP TRIGGER audit_records_no_delete"))
        connection.execute(text("DELETE FROM audit_records WHERE seq = (SELECT max(seq) FROM audit_records)"))
    failed = dg.materialize([audit_chain_heads], resources=resources, raise_on_error=False)
    assert not failed.success
    verify = CliRunner().invoke(app, ["audit", "verify"], env={"AGENTPROVISION_DATABASE_URL": url})
    assert verify.exit_code == 3 and "cut off the end" in verify.output
