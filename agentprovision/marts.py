"""Read access to the warehouse marts: the one module dashboards, CLI reports and agent tools use.

Every read names a :class:`Scope`. A tenant scope is enforced in SQL by
:func:`agentprovision.sql_guard.scope_select`, which rewrites every mart the query touches into a
tenant-filtered subquery; :meth:`MartReader.read` builds its SQL and sends it through the same
path, so there is one scoping implementation however a query is written.

Targets, chosen by ``AGENTPROVISION_WAREHOUSE_TARGET``:

- ``duckdb`` (embedded default): the *published* copy (``settings.published_duckdb_path``), which
  the pipeline replaces atomically after each build. DuckDB allows one writing process, so readers
  never open the live file. Each call opens its own read-only connection with external access
  disabled and closes it: a long-lived connection would keep reading a replaced file. Opening can
  fail for a moment while the file is swapped; that is retried briefly and never reaches callers
  as a lock error.
- ``postgres``: ``settings.warehouse_url``, in a read-only transaction with a statement timeout.

The list of marts and their columns comes from the warehouse's own catalog (information_schema of
the ``marts`` schema), cached per published file (DuckDB) or for a short time (PostgreSQL).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa
import sqlglot
from sqlglot import exp

from agentprovision.settings import Settings, load_settings
from agentprovision.sql_guard import MARTS_SCHEMA, TENANT_COLUMN, SqlRefused, SqlSyntaxError, UnsafeQuery, scope_select

__all__ = [
    "MartQueryError",
    "MartQueryTimeout",
    "MartReader",
    "Scope",
    "SqlRefused",
    "SqlSyntaxError",
    "UnsafeQuery",
    "WarehouseUnavailable",
]

HOW_TO_BUILD = "run `make run` or `agentprovision demo --once` to build and publish it"
OPEN_RETRY_SECONDS = 3.0  # how long a reader waits out a file swap before giving up
PG_CATALOG_TTL_SECONDS = 60.0
PG_STATEMENT_TIMEOUT_MS = 30_000
STREAM_BATCH_ROWS = 1_024  # a capped DuckDB read pulls batches of this size until it has enough rows
# Every reader connection to the published file uses this one configuration: DuckDB shares one database
# instance per file in a process and refuses a second connection with a different one. Extensions are
# neither installed nor loaded on demand, so nothing a query names can fetch code.
_DUCKDB_CONFIG = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
}


class WarehouseUnavailable(RuntimeError):
    """No published warehouse, or a mart is missing from it; the message says what to run."""


class MartQueryError(ValueError):
    """A query or read request the marts cannot answer (unknown column, bad parameter); safe to show."""


class MartQueryTimeout(MartQueryError):
    """The query ran past the caller's `timeout_seconds` and was stopped in the database."""


@dataclass(frozen=True)
class Scope:
    """Whose rows a read may see: one tenant's, or every tenant's (tenant_id None, platform-wide)."""

    tenant_id: str | None

    @classmethod
    def platform(cls) -> Scope:
        return cls(None)

    @classmethod
    def tenant(cls, tenant_id: str) -> Scope:
        if not tenant_id or not tenant_id.strip():
            raise ValueError("a tenant scope needs a tenant id")
        return cls(tenant_id)

    @property
    def is_platform(self) -> bool:
        return self.tenant_id is None

    def __str__(self) -> str:
        return "platform" if self.tenant_id is None else f"tenant {self.tenant_id}"


# Catalog: mart name -> column names in order. Cached per published DuckDB file (path, inode, mtime),
# so a newly published warehouse is read afresh while repeated reads of the same file cost nothing.
Catalog = dict[str, tuple[str, ...]]
_duckdb_catalogs: dict[tuple[str, int, int], Catalog] = {}
_pg_catalogs: dict[str, tuple[float, Catalog]] = {}
_catalog_lock = threading.Lock()

_CATALOG_SQL = (
    "SELECT table_name, column_name FROM information_schema.columns "
    "WHERE table_schema = '" + MARTS_SCHEMA + "' ORDER BY table_name, ordinal_position"
)

# DuckDB messages that mean "the file is being swapped or briefly held"; worth a retry, never worth showing.
_TRANSIENT_OPEN_ERRORS = ("lock", "no such file", "cannot open", "different configuration", "not a valid duckdb")


class MartReader:
    """Scoped, read-only access to the marts of the configured warehouse."""

    def __init__(self, settings: Settings | None = None, *, duckdb_file: Path | None = None):
        """`duckdb_file` reads that DuckDB warehouse file instead of the settings' published copy (and so the
        DuckDB target): for a caller handed a specific warehouse, such as the agent tool's tests."""
        self.settings = settings or load_settings()
        self.target = "duckdb" if duckdb_file is not None else self.settings.warehouse_target
        self._duckdb_file = duckdb_file
        if self.target not in ("duckdb", "postgres"):
            raise WarehouseUnavailable(f"unknown warehouse target {self.target!r}")

    # --- public API ------------------------------------------------------------------------------

    @property
    def dialect(self) -> str:
        return "duckdb" if self.target == "duckdb" else "postgres"

    @property
    def published_at(self) -> datetime | None:
        """When the DuckDB copy being read was published (its mtime); None when there is none.

        PostgreSQL marts are rebuilt in place, so there is no publish moment to report: None there too.
        """
        if self.target != "duckdb":
            return None
        try:
            return datetime.fromtimestamp(self._published_path().stat().st_mtime, tz=UTC)
        except FileNotFoundError:
            return None

    def available(self) -> bool:
        """True when there is a warehouse with at least one mart to read."""
        try:
            return bool(self.marts())
        except WarehouseUnavailable:
            return False

    def marts(self) -> Catalog:
        """Known marts and their columns, from the warehouse catalog."""
        if self.target == "duckdb":
            return self._duckdb_catalog()
        return self._pg_catalog()

    def columns(self, mart: str) -> tuple[str, ...]:
        catalog = self.marts()
        if mart not in catalog:
            raise WarehouseUnavailable(
                f"mart {mart!r} is not in the warehouse; has `dbt build` run since it was added? ({HOW_TO_BUILD})"
            )
        return catalog[mart]

    def read(
        self,
        mart: str,
        scope: Scope,
        *,
        columns: Sequence[str] | None = None,
        where: Mapping[str, Any] | None = None,
        order_by: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> pl.DataFrame:
        """Rows of one mart in scope. `where` is column -> value (a list/tuple/set means IN, None means IS NULL);
        `order_by` entries are column names, optionally followed by " desc"."""
        available = self.columns(mart)
        by_lower = {name.lower(): name for name in available}

        def known(name: str) -> str:
            found = by_lower.get(name.lower())
            if found is None:
                raise MartQueryError(f"{mart} has no column {name!r}; it has {', '.join(available)}")
            return found

        def column(name: str) -> exp.Column:
            return exp.column(known(name), quoted=True)

        selected = [column(c) for c in columns] if columns else [exp.Star()]
        query = exp.select(*selected).from_(exp.table_(mart, db=MARTS_SCHEMA))
        params: dict[str, Any] = {}
        for index, (name, value) in enumerate((where or {}).items()):
            if value is None:
                query = query.where(column(name).is_(exp.null()))
            elif isinstance(value, (list, tuple, set, frozenset)):
                values = list(value)
                if not values:
                    query = query.where(exp.false())
                    continue
                holders = []
                for position, item in enumerate(values):
                    key = f"w{index}_{position}"
                    params[key] = item
                    holders.append(exp.Placeholder(this=key))
                query = query.where(column(name).isin(*holders))
            else:
                key = f"w{index}"
                params[key] = value
                query = query.where(column(name).eq(exp.Placeholder(this=key)))
        for entry in order_by or ():
            name, _, direction = entry.strip().partition(" ")
            direction = direction.strip().lower()
            if direction not in ("", "asc", "desc"):
                raise MartQueryError(f"order_by entry {entry!r}: use 'column' or 'column desc'")
            query = query.order_by(exp.Ordered(this=column(name), desc=direction == "desc"))
        if limit is not None:
            if limit < 0:
                raise MartQueryError("limit must not be negative")
            query = query.limit(int(limit))
        return self.select(query.sql(dialect=self.dialect), scope, params)

    def select(
        self,
        sql: str,
        scope: Scope,
        params: Mapping[str, Any] | None = None,
        *,
        limit: int | None = None,
        timeout_seconds: float | None = None,
    ) -> pl.DataFrame:
        """Run one read-only SELECT over the marts, scoped. Raises UnsafeQuery for anything else
        (SqlSyntaxError, a subclass, when the text is not a well-formed query at all).

        Parameters are written `$name` and bound by the database (DuckDB) or substituted as typed literals
        into the syntax tree (PostgreSQL); values are never formatted into SQL text.
        `limit` returns at most that many rows, fetched incrementally so a huge result is never
        materialised (ask for one more than you show to learn whether there were more). `timeout_seconds`
        stops the query in the database after that long and raises MartQueryTimeout.
        """
        if limit is not None and limit < 0:
            raise MartQueryError("limit must not be negative")
        if timeout_seconds is not None and not timeout_seconds > 0:
            raise MartQueryError("timeout_seconds must be positive")
        catalog = self.marts()
        scoped = scope_select(sql, scope.tenant_id, catalog, dialect=self.dialect, allow_parameters=True)
        if self.target == "duckdb":
            return self._duckdb_query(scoped, dict(params or {}), limit, timeout_seconds)
        return self._pg_query(scoped, dict(params or {}), limit, timeout_seconds)

    # --- DuckDB ----------------------------------------------------------------------------------

    def _published_path(self) -> Path:
        return self._duckdb_file if self._duckdb_file is not None else self.settings.published_duckdb_path

    @contextmanager
    def _duckdb_connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        path = self._published_path()
        deadline = time.monotonic() + OPEN_RETRY_SECONDS
        delay = 0.01
        while True:
            # The version published now (publish() swaps a symlink): connecting by the link's own name would
            # share an instance with reads still open on an older version, and keep reading that one.
            target = path.resolve()
            if not target.exists():
                if path.exists():
                    continue  # that version was replaced just now: resolve again
                raise WarehouseUnavailable(f"no published warehouse at {path}; {HOW_TO_BUILD}")
            try:
                con = duckdb.connect(str(target), read_only=True, config=dict(_DUCKDB_CONFIG))
                break
            except duckdb.Error as exc:
                transient = any(marker in str(exc).lower() for marker in _TRANSIENT_OPEN_ERRORS)
                if not transient or time.monotonic() >= deadline:
                    raise WarehouseUnavailable(
                        f"the published warehouse {path} cannot be opened ({type(exc).__name__}); try again shortly"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.2)
        try:
            # Session-local: timestamps come back in UTC whatever the host's zone. (No lock_configuration:
            # connections to one file share a database instance in-process, and DuckDB refuses to re-enable
            # external access on a running database anyway.)
            con.execute("SET TimeZone = 'UTC'")
            yield con
        finally:
            con.close()

    def _duckdb_catalog(self) -> Catalog:
        path = self._published_path()
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            raise WarehouseUnavailable(f"no published warehouse at {path}; {HOW_TO_BUILD}") from None
        key = (str(path), stat.st_ino, stat.st_mtime_ns)
        with _catalog_lock:
            cached = _duckdb_catalogs.get(key)
        if cached is not None:
            return cached
        with self._duckdb_connect() as con:
            rows = con.execute(_CATALOG_SQL).fetchall()
        catalog = _catalog_from(rows)
        if not catalog:
            raise WarehouseUnavailable(f"the published warehouse {path} has no marts yet; {HOW_TO_BUILD}")
        with _catalog_lock:
            # Keep only the newest file's catalog per path: old ones are never asked for again.
            for old in [k for k in _duckdb_catalogs if k[0] == key[0]]:
                del _duckdb_catalogs[old]
            _duckdb_catalogs[key] = catalog
        return catalog

    def _duckdb_query(
        self, sql: str, params: dict[str, Any], limit: int | None, timeout_seconds: float | None
    ) -> pl.DataFrame:
        with self._duckdb_connect() as con:
            # The connection is this call's own, so interrupting it stops exactly this query.
            timer = threading.Timer(timeout_seconds, con.interrupt) if timeout_seconds else None
            if timer is not None:
                timer.daemon = True
                timer.start()
            try:
                relation = con.sql(sql, params=params or None)
                if limit is None:
                    return relation.pl()
                return _first_rows(relation, limit)
            except duckdb.InterruptException:
                raise MartQueryTimeout(f"the query ran longer than {timeout_seconds:g}s and was stopped") from None
            except duckdb.CatalogException as exc:
                raise WarehouseUnavailable(
                    f"the published warehouse lacks something the query reads ({_first_line(exc)}); {HOW_TO_BUILD}"
                ) from None
            except (duckdb.BinderException, duckdb.ParserException, duckdb.InvalidInputException) as exc:
                raise MartQueryError(f"query failed: {_first_line(exc)}") from None
            except duckdb.PermissionException as exc:
                raise UnsafeQuery(f"query refused by the warehouse: {_first_line(exc)}") from None
            except duckdb.Error as exc:  # conversion, overflow, division by zero, error(): the query's own fault
                raise MartQueryError(f"query failed: {_first_line(exc)}") from None
            finally:
                if timer is not None:
                    timer.cancel()

    # --- PostgreSQL ------------------------------------------------------------------------------

    def _pg_conninfo(self) -> str:
        url = getattr(self.settings, "warehouse_url", None) or os.environ.get("AGENTPROVISION_WAREHOUSE_URL")
        if not url:
            raise WarehouseUnavailable("AGENTPROVISION_WAREHOUSE_URL is not set; the PostgreSQL warehouse is unknown")
        return url.replace("postgresql+psycopg://", "postgresql://", 1)

    @contextmanager
    def _pg_connect(self) -> Iterator[Any]:
        import psycopg  # only the PostgreSQL target needs it

        try:
            conn = psycopg.connect(
                self._pg_conninfo(),
                connect_timeout=5,
                options=f"-c default_transaction_read_only=on -c statement_timeout={PG_STATEMENT_TIMEOUT_MS}",
            )
        except psycopg.Error as exc:
            raise WarehouseUnavailable(
                f"the PostgreSQL warehouse cannot be reached ({type(exc).__name__}); {HOW_TO_BUILD}"
            ) from None
        try:
            yield conn
        finally:
            conn.rollback()  # a reader never commits anything
            conn.close()

    def _pg_catalog(self) -> Catalog:
        url = self._pg_conninfo()
        with _catalog_lock:
            cached = _pg_catalogs.get(url)
        if cached is not None and time.monotonic() - cached[0] < PG_CATALOG_TTL_SECONDS:
            return cached[1]
        with self._pg_connect() as conn:
            rows = conn.execute(_CATALOG_SQL).fetchall()
        catalog = _catalog_from(rows)
        if not catalog:
            raise WarehouseUnavailable(f"the PostgreSQL warehouse has no marts yet; {HOW_TO_BUILD}")
        with _catalog_lock:
            _pg_catalogs[url] = (time.monotonic(), catalog)
        return catalog

    def _pg_query(
        self, sql: str, params: dict[str, Any], limit: int | None, timeout_seconds: float | None
    ) -> pl.DataFrame:
        import psycopg

        tree = sqlglot.parse_one(sql, read="postgres")
        # `$name` parses as a Parameter in PostgreSQL's dialect, `:name` and `%(name)s` as Placeholders.
        for holder in list(tree.find_all(exp.Placeholder, exp.Parameter)):
            name = holder.name
            if not name or name not in params:
                raise MartQueryError(f"query parameter ${name or '?'} has no value")
            holder.replace(_literal(params[name]))
        # Sent without parameters, so psycopg leaves the text (and any % in it) exactly as written.
        text = tree.sql(dialect="postgres")
        with self._pg_connect() as conn:
            try:
                if timeout_seconds is not None:
                    # Local to this read-only transaction; replaces the connection's default for this query.
                    timeout_ms = f"{max(1, int(timeout_seconds * 1000))}"
                    conn.execute("SELECT set_config('statement_timeout', %s, true)", (timeout_ms,))
                # A capped read uses a server-side cursor, so only the rows asked for leave the database.
                cursor = conn.cursor(name="mart_select") if limit is not None else conn.cursor()
                cursor.execute(text)
                rows = cursor.fetchmany(limit) if limit is not None else cursor.fetchall()
                names = [column.name for column in cursor.description or ()]
            except psycopg.errors.UndefinedTable as exc:
                raise WarehouseUnavailable(f"the warehouse lacks a mart the query reads ({_first_line(exc)})") from None
            except psycopg.errors.InsufficientPrivilege as exc:
                raise UnsafeQuery(f"query refused by the warehouse: {_first_line(exc)}") from None
            except psycopg.errors.QueryCanceled:
                raise MartQueryTimeout(f"the query ran longer than {timeout_seconds:g}s and was stopped") from None
            except psycopg.Error as exc:
                raise MartQueryError(f"query failed: {_first_line(exc)}") from None
        if not rows:
            return pl.DataFrame({name: [] for name in names})
        return pl.DataFrame(rows, schema=names, orient="row", infer_schema_length=None)


def _first_rows(relation: duckdb.DuckDBPyRelation, limit: int) -> pl.DataFrame:
    """At most `limit` rows of a DuckDB result, pulled batch by batch so the rest is never computed."""
    reader = relation.to_arrow_reader(min(max(limit, 1), STREAM_BATCH_ROWS))
    batches = []
    count = 0
    while count < limit:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            break
        batches.append(batch)
        count += batch.num_rows
    table = pa.Table.from_batches(batches, schema=reader.schema).slice(0, limit)
    # DuckDB's own .pl() renames repeated column names (a, a_1); do the same, since polars needs unique ones.
    return pl.from_arrow(table.rename_columns(_unique_names(table.column_names)))


def _unique_names(names: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    unique = []
    for name in names:
        candidate, suffix = name, 0
        while candidate in seen:
            suffix += 1
            candidate = f"{name}_{suffix}"
        seen.add(candidate)
        unique.append(candidate)
    return unique


def _literal(value: Any) -> exp.Expr:
    """A typed SQL literal for one parameter value, built as a syntax node (sqlglot quotes it)."""
    if isinstance(value, datetime):
        return exp.cast(exp.Literal.string(value.isoformat()), "TIMESTAMPTZ" if value.tzinfo else "TIMESTAMP")
    if isinstance(value, date):
        return exp.cast(exp.Literal.string(value.isoformat()), "DATE")
    return exp.convert(value)


def _catalog_from(rows: Sequence[tuple[str, str]]) -> Catalog:
    catalog: dict[str, list[str]] = {}
    for table, column in rows:
        if table.startswith("_"):
            continue  # bookkeeping tables are not marts
        catalog.setdefault(table, []).append(column)
    return {table: tuple(columns) for table, columns in catalog.items()}


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def tenant_owned(columns: Sequence[str]) -> bool:
    return TENANT_COLUMN in {c.lower() for c in columns}
