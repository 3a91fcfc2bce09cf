"""Tenant scoping: every read and write of tenant-owned rows happens inside one tenant's scope.

Two layers, so that a forgotten filter in application code cannot leak another tenant's rows:
- PostgreSQL: row-level security (migration `0005_tenant_rls`). The application connects as a
  member of `agentprovision_app`, which owns no table and cannot bypass RLS; the tenant is set per
  transaction with `set_config('app.tenant_id', ..., true)`, so a pooled connection never carries it
  into the next transaction, and with no tenant set every policy matches nothing (fail-closed).
- Every backend, SQLite included: `tenant_session()` adds the tenant criterion to every ORM query
  and refuses to flush a row that belongs to another tenant. This is the embedded default's only
  guard, so on SQLite all tenant-scoped access must go through it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

from sqlalchemy import Engine, event, text
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker, with_loader_criteria

from agentprovision.store.registry import Base

TENANT_SETTING = "app.tenant_id"
APP_ROLE = "agentprovision_app"
PLATFORM_ROLE = "agentprovision_platform"
_SCOPE_KEY = "agentprovision_tenant"


class CrossTenantWrite(Exception):
    """A tenant-scoped session was asked to write a row that belongs to another tenant."""


@cache  # the registry imports every table module up front, so the set of mappers is fixed
def tenant_owned_classes() -> tuple[type, ...]:
    return tuple(mapper.class_ for mapper in Base.registry.mappers if "tenant_id" in mapper.columns)


@contextmanager
def tenant_session(factory: sessionmaker[Session], tenant_id: str) -> Iterator[Session]:
    """One transaction that can only see and write `tenant_id`'s rows."""
    if not tenant_id:
        raise ValueError("a tenant-scoped session needs a tenant id")
    with factory() as session, session.begin():
        session.info[_SCOPE_KEY] = tenant_id
        if session.get_bind().dialect.name == "postgresql":
            # `true` makes the setting local to this transaction: it ends with the commit.
            session.execute(
                text("SELECT set_config(:name, :tenant, true)"), {"name": TENANT_SETTING, "tenant": tenant_id}
            )
        yield session


@event.listens_for(Session, "do_orm_execute")
def _scope_queries(state: ORMExecuteState) -> None:
    tenant_id = state.session.info.get(_SCOPE_KEY)
    if tenant_id is None or not (state.is_select or state.is_update or state.is_delete):
        return
    # The tenant is a closure variable, which SQLAlchemy tracks as a bound parameter of the cached criterion.
    for cls in tenant_owned_classes():
        state.statement = state.statement.options(
            with_loader_criteria(cls, lambda c: c.tenant_id == tenant_id, include_aliases=True)
        )


@event.listens_for(Session, "before_flush")
def _refuse_cross_tenant_writes(session: Session, _context: object, _instances: object) -> None:
    tenant_id = session.info.get(_SCOPE_KEY)
    if tenant_id is None:
        return
    for row in (*session.new, *session.dirty, *session.deleted):
        if hasattr(row, "tenant_id") and row.tenant_id != tenant_id:
            raise CrossTenantWrite(
                f"refused: this session is scoped to tenant {tenant_id!r} but the "
                f"{type(row).__tablename__} row belongs to {row.tenant_id!r}"
            )


def app_engine_url(owner_url: str, login_role: str) -> str:
    """The same database, reached as a login role that is a member of the app role (tests, tooling)."""
    from sqlalchemy.engine import make_url

    return make_url(owner_url).set(username=login_role, password=None).render_as_string(hide_password=False)


def grant_app_login(engine: Engine, login_role: str, *, platform: bool = False) -> None:
    """Create (if needed) a LOGIN role that inherits the app role; run as the owner."""
    group = PLATFORM_ROLE if platform else APP_ROLE
    with engine.begin() as connection:
        exists = connection.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": login_role}).first()
        if not exists:
            connection.execute(text(f'CREATE ROLE "{login_role}" LOGIN NOBYPASSRLS'))
        connection.execute(text(f'GRANT {group} TO "{login_role}"'))
