"""The conformance kit: the behaviour every connector must have, checked against a real peer.

A connector author writes a `ConformanceCase` (how to configure the connector against a test peer
and how to make new records appear there) and runs every check in `CHECKS`, usually one pytest
test per check:

    @pytest.mark.parametrize("check", CHECKS)
    def test_conformance(check, tmp_path):
        run_check(MyCase(...), check, tmp_path)

The checks use a scratch ops store (SQLite) and the real sync engine, so they test what will run
in production: settings validation, `check`, declared streams, incremental reads from a saved
cursor, resuming after a failure without duplicates, and errors mapped to ConnectorErrors that
name the integration. Each failure is an AssertionError saying what the connector must change.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select

from agentprovision.store.connector_models import SyncRecord, SyncRun
from agentprovision.store.db import make_engine, migrate, session_factory, transaction
from agentprovision.store.models import Integration, Tenant
from connectors.credentials import MappingVault, SecretResolver
from connectors.errors import AuthError, ConnectorError, CredentialError, SettingsError, Unreachable
from connectors.http import RetryPolicy
from connectors.sdk import Batch, Connector, Stream
from connectors.sync import SyncOptions, build_connector, run_sync

CHECKS = ("settings", "check", "streams", "incremental", "resume", "errors")
TENANT = "conformance"
INTEGRATION = "under-test"
SECRET_REF = "secret://conformance/credential"  # noqa: S105 (a reference, not a secret)
FAST_RETRY = RetryPolicy(max_attempts=2, backoff_base=0.01, backoff_max=0.05, max_retry_after=1, timeout=5)


class ConformanceCase:
    """Describe one connector against one test peer. Override what your connector needs."""

    connector: type[Connector]
    #: the stream the incremental and resume checks exercise
    stream: str
    credential: str | None = None
    #: a credential the peer refuses, to check the 401 mapping; None when the connector has none
    bad_credential: str | None = None
    allowed_hosts: tuple[str, ...] = ()
    #: records an incremental read may legitimately read again (inclusive cursors re-read the boundary)
    reread_allowance: int = 1
    base_dir: Path = Path.cwd()

    def settings(self) -> dict[str, Any]:
        """Valid settings pointing at the peer."""
        raise NotImplementedError

    def invalid_settings(self) -> dict[str, Any]:
        """Settings the connector's Settings model must refuse."""
        raise NotImplementedError

    def unreachable_settings(self) -> dict[str, Any]:
        """Valid settings whose `check` must fail (a peer that is not there)."""
        raise NotImplementedError

    def add_records(self, count: int) -> None:
        """Make `count` new records of `stream` appear at the peer, each later than all before."""
        raise NotImplementedError


@dataclass
class Harness:
    case: ConformanceCase
    engine: Engine

    @classmethod
    def open(cls, case: ConformanceCase, workdir: Path) -> Harness:
        engine = make_engine(f"sqlite:///{workdir / 'conformance.db'}")
        migrate(engine)
        harness = cls(case, engine)
        harness.register(case.settings())
        case.add_records(1)  # a peer with data: streams may take their schema from it
        return harness

    def register(self, settings: dict[str, Any], credential: str | None = None) -> None:
        spec = {
            "id": INTEGRATION,
            "kind": self.case.connector.kind,
            "settings": settings,
            "credential": SECRET_REF if (credential or self.case.credential) else None,
            "schedule": None,
            "allowed_hosts": list(self.case.allowed_hosts),
        }
        with transaction(session_factory(self.engine)) as session:
            if session.get(Tenant, TENANT) is None:
                session.add(
                    Tenant(
                        tenant_id=TENANT,
                        display_name="Conformance",
                        region="test",
                        plan="starter",
                        max_concurrent_runs=1,
                        budget_hard_usd=Decimal(1),
                        config_version=1,
                    )
                )
                session.flush()
            row = session.get(Integration, (TENANT, INTEGRATION))
            if row is None:
                session.add(
                    Integration(
                        tenant_id=TENANT,
                        integration_id=INTEGRATION,
                        kind=spec["kind"],
                        config_version=1,
                        spec=spec,
                    )
                )
            else:
                row.spec = spec
        self.secret = credential or self.case.credential

    def resolver(self) -> SecretResolver:
        values = {(TENANT, SECRET_REF.removeprefix("secret://")): self.secret} if self.secret else {}
        return SecretResolver(MappingVault(values))

    def options(self, streams: tuple[str, ...] | None = None) -> SyncOptions:
        return SyncOptions(batch_size=2, retry=FAST_RETRY, streams=streams, base_dir=self.case.base_dir)

    def factory(self, spec: dict[str, Any], tenant_id: str, resolver: SecretResolver, options: SyncOptions) -> Any:
        return build_connector(spec, tenant_id, resolver, options, cls=self.case.connector)

    def connector(self, settings: dict[str, Any] | None = None) -> Connector:
        spec = {
            "id": INTEGRATION,
            "kind": self.case.connector.kind,
            "settings": settings if settings is not None else self.case.settings(),
            "credential": SECRET_REF if self.secret else None,
            "allowed_hosts": list(self.case.allowed_hosts),
        }
        return self.factory(spec, TENANT, self.resolver(), self.options())

    def sync(self, factory: Any = None) -> Any:
        return run_sync(
            self.engine,
            TENANT,
            INTEGRATION,
            resolver=self.resolver(),
            options=self.options((self.case.stream,)),
            connector_factory=factory or self.factory,
        )

    def stored(self) -> int:
        with transaction(session_factory(self.engine)) as session:
            return session.scalar(
                select(func.count()).select_from(SyncRecord).where(SyncRecord.stream == self.case.stream)
            )


def run_check(case: ConformanceCase, check: str, workdir: Path) -> None:
    """Run one named check; raises AssertionError with advice when the connector falls short."""
    if check not in CHECKS:
        raise ValueError(f"unknown check {check!r}; checks: {', '.join(CHECKS)}")
    harness = Harness.open(case, workdir)
    try:
        globals()[f"check_{check}"](harness)
    finally:
        harness.engine.dispose()


def run_all(case: ConformanceCase, workdir: Path) -> None:
    for index, check in enumerate(CHECKS):
        directory = workdir / f"{index}-{check}"
        directory.mkdir(parents=True, exist_ok=True)
        run_check(case, check, directory)


def check_settings(h: Harness) -> None:
    cls = h.case.connector
    assert getattr(cls, "kind", None), "set the class attribute `kind` to the entry-point name"
    cls.validate_settings(h.case.settings())
    for bad, what in ((h.case.invalid_settings(), "invalid_settings()"), ({**h.case.settings(), "no_such": 1}, None)):
        try:
            cls.validate_settings(bad)
        except SettingsError as exc:
            if what is None:
                assert "no_such" in str(exc), f"an unknown setting must be named in the error, got: {exc}"
        else:
            raise AssertionError(f"{what or 'an unknown setting key'} was accepted; Settings must refuse it")


def check_check(h: Harness) -> None:
    connector = h.connector()
    connector.check()  # the peer is there: must pass
    _expect_connector_error(lambda: h.connector(h.case.unreachable_settings()).check(), "check() on an absent peer")


def check_streams(h: Harness) -> None:
    streams = h.connector().streams()
    names = [s.name for s in streams]
    assert h.case.stream in names, f"streams() must include {h.case.stream!r}; it has {names}"
    assert len(set(names)) == len(names), f"stream names must be unique: {names}"
    for stream in streams:
        assert isinstance(stream, Stream) and stream.primary_key, f"stream {stream.name!r} needs a primary key"
        for key in stream.primary_key:
            assert key in stream.schema.names, f"stream {stream.name!r}: primary key {key!r} is not in its schema"


def check_incremental(h: Harness) -> None:
    h.case.add_records(3)
    first = h.sync()
    assert first.status == "succeeded" and first.inserted >= 3, f"the first sync should store the records: {first}"
    baseline = h.stored()
    h.case.add_records(3)
    second = h.sync()
    assert second.inserted == 3, f"the second sync must store exactly the 3 new records, stored {second.inserted}"
    assert second.read <= 3 + h.case.reread_allowance, (
        f"the second sync read {second.read} records for 3 new ones: it must start from the saved cursor"
    )
    third = h.sync()
    assert third.inserted == 0 and third.updated == 0, f"a sync with nothing new must store nothing: {third}"
    assert h.stored() == baseline + 3, "records must not be duplicated"


class _FailsAfterFirstBatch:
    """Wraps a connector so its read dies after one batch, like a connection dropping midway."""

    def __init__(self, inner: Connector):
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def read(self, stream: Stream, cursor: dict[str, Any] | None) -> Iterator[Batch]:
        batches = self._inner.read(stream, cursor)
        first = next(batches, None)
        if first is not None:
            yield first
        raise Unreachable("injected failure: the connection dropped after the first batch")


def check_resume(h: Harness) -> None:
    h.case.add_records(2)
    h.sync()
    before = h.stored()
    h.case.add_records(5)

    def failing(*args: Any) -> Any:
        return _FailsAfterFirstBatch(h.factory(*args))

    try:
        h.sync(failing)
    except ConnectorError as exc:
        assert f"{TENANT}/{INTEGRATION}" in str(exc), f"the error must name the integration: {exc}"
    else:
        raise AssertionError("a sync whose read failed midway must raise a ConnectorError")
    with transaction(session_factory(h.engine)) as session:
        failed = session.scalar(select(SyncRun).where(SyncRun.status == "failed"))
        assert failed is not None and failed.error, "the failed sync must be in sync history with its error"
    partial = h.stored()
    assert before <= partial <= before + 5, "a failed sync may keep only whole committed batches"
    resumed = h.sync()
    assert resumed.status == "succeeded"
    assert h.stored() == before + 5, f"after resuming there must be exactly {before + 5} records, not {h.stored()}"
    assert resumed.inserted == before + 5 - partial, "the resumed sync must store only what the failed one did not"


def check_errors(h: Harness) -> None:
    try:
        h.case.connector(h.case.invalid_settings(), h.connector().context)
    except SettingsError:
        pass
    else:
        raise AssertionError("constructing the connector with invalid settings must raise SettingsError")
    if h.case.connector.credential.required:
        h.secret = None
        _expect_connector_error(lambda: h.connector(), "a missing credential", (SettingsError, CredentialError))
        h.secret = h.case.credential
    if h.case.bad_credential is not None:
        h.secret = h.case.bad_credential
        _expect_connector_error(lambda: h.connector().check(), "check() with a refused credential", (AuthError,))
        h.secret = h.case.credential


def _expect_connector_error(action: Any, what: str, kinds: tuple[type[Exception], ...] = (ConnectorError,)) -> None:
    try:
        action()
    except kinds:
        return
    except ConnectorError as exc:
        raise AssertionError(f"{what} raised {type(exc).__name__}, expected {kinds[0].__name__}: {exc}") from exc
    except Exception as exc:
        raise AssertionError(
            f"{what} raised a raw {type(exc).__name__}; map it to a ConnectorError subclass with advice: {exc}"
        ) from exc
    raise AssertionError(f"{what} must raise a ConnectorError, but it succeeded")
