"""SQL databases: any SQLAlchemy URL, read incrementally on a cursor column.

Rows are read in keyset order (cursor column, then primary key) so that rows sharing a cursor
value are never split across batches and lost: the saved cursor is the (value, key) pair of the
last committed row and the next read starts strictly after it. Each batch commits its cursor.
The credential, when given, is the database password and is put into the URL only in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa
from pydantic import Field, model_validator
from sqlalchemy import MetaData, Table, and_, create_engine, or_, select, tuple_
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchTableError, OperationalError, SQLAlchemyError

from connectors.errors import AuthError, ConnectorError, NotFound, SettingsError, Unreachable
from connectors.sdk import Batch, Connector, ConnectorSettings, CredentialSpec, Stream, jsonable, parse_timestamp


class SqlTable(ConnectorSettings):
    table: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
    cursor_column: str = Field(min_length=1)
    primary_key: list[str] | None = Field(default=None, description="Default: the table's own primary key.")
    stream: str | None = Field(default=None, description="Stream name; default: the table name.")

    @property
    def stream_name(self) -> str:
        return self.stream or self.table.split(".")[-1]


class SqlSettings(ConnectorSettings):
    url: str = Field(min_length=1, description="SQLAlchemy URL, usually by reference: ${WAREHOUSE_URL}.")
    # Either one table at the top level (the common case) or several under `tables`.
    table: str | None = None
    cursor_column: str | None = None
    primary_key: list[str] | None = None
    tables: list[SqlTable] = Field(default_factory=list)

    @model_validator(mode="after")
    def one_way_of_naming_tables(self) -> SqlSettings:
        if self.table and self.tables:
            raise ValueError("give either table (with cursor_column) or tables, not both")
        if not self.table and not self.tables:
            raise ValueError("name a table (with cursor_column) or list tables")
        if self.table and not self.cursor_column:
            raise ValueError("cursor_column is required with table")
        return self

    def all_tables(self) -> list[SqlTable]:
        if self.table:
            return [SqlTable(table=self.table, cursor_column=self.cursor_column or "", primary_key=self.primary_key)]
        return list(self.tables)


ARROW_TYPES: list[tuple[type, pa.DataType]] = [
    (bool, pa.bool_()),
    (int, pa.int64()),
    (float, pa.float64()),
    (Decimal, pa.string()),  # exact decimals survive as text; the warehouse casts them back
    (datetime, pa.timestamp("us", tz="UTC")),
    (date, pa.date32()),
    (str, pa.string()),
]


def _arrow_ready(row: dict[str, Any]) -> dict[str, Any]:
    """Exact decimals travel as text (see ARROW_TYPES); everything else Arrow takes as it is."""
    return {k: str(v) if isinstance(v, Decimal) else v for k, v in row.items()}


def arrow_type(column: Any) -> pa.DataType:
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        return pa.string()
    for candidate, arrow in ARROW_TYPES:
        if issubclass(python_type, candidate):
            return arrow
    return pa.string()


class SqlConnector(Connector):
    kind = "sql"
    description = "Any SQLAlchemy database, incremental on a cursor column."
    Settings = SqlSettings
    credential = CredentialSpec(required=False, description="the database password, if the URL has none")

    settings: SqlSettings

    def __init__(self, settings: Any, context: Any):
        super().__init__(settings, context)
        self._engine: Engine | None = None
        self._tables: dict[str, Table] = {}

    @classmethod
    def stream_names(cls, settings: SqlSettings) -> list[str]:  # type: ignore[override]
        return [t.stream_name for t in settings.all_tables()]

    @classmethod
    def is_local(cls, settings: SqlSettings) -> bool:  # type: ignore[override]
        return settings.url.startswith("sqlite")

    def engine(self) -> Engine:
        if self._engine is None:
            try:
                url = make_url(self.settings.url)
            except ArgumentError:
                raise SettingsError("url is not a SQLAlchemy URL (dialect+driver://user@host/database)") from None
            if url.drivername in ("postgresql", "postgres"):
                url = url.set(drivername="postgresql+psycopg")
            if url.get_backend_name() == "sqlite" and url.database and not url.database.startswith(":"):
                url = url.set(database=str(self.context.path(url.database)))
            if self.context.secret:
                url = url.set(password=self.context.secret)
            try:
                self._engine = create_engine(url, pool_pre_ping=True)
            except (ArgumentError, ImportError) as exc:
                raise SettingsError(f"url cannot be used: {type(exc).__name__}: {str(exc)[:120]}") from None
        return self._engine

    def _table(self, spec: SqlTable) -> Table:
        if spec.table not in self._tables:
            schema, _, name = spec.table.rpartition(".")
            try:
                self._tables[spec.table] = Table(name, MetaData(), schema=schema or None, autoload_with=self.engine())
            except NoSuchTableError:
                raise NotFound(f"table {spec.table!r} does not exist", hint="check the table setting") from None
            except SQLAlchemyError as exc:
                raise self._database_error(exc) from None
        return self._tables[spec.table]

    def _key_columns(self, spec: SqlTable, table: Table) -> list[str]:
        keys = spec.primary_key or [c.name for c in table.primary_key.columns]
        if not keys:
            raise SettingsError(f"table {spec.table!r} has no primary key; set primary_key in the settings")
        for name in [*keys, spec.cursor_column]:
            if name not in table.c:
                raise SettingsError(f"table {spec.table!r} has no column {name!r}")
        return keys

    def streams(self) -> list[Stream]:
        streams = []
        for spec in self.settings.all_tables():
            table = self._table(spec)
            keys = self._key_columns(spec, table)
            schema = pa.schema([pa.field(c.name, arrow_type(c)) for c in table.columns])
            streams.append(Stream(spec.stream_name, tuple(keys), schema, cursor_field=spec.cursor_column, extras=False))
        return streams

    def check(self) -> None:
        for spec in self.settings.all_tables():
            table = self._table(spec)
            self._key_columns(spec, table)
            try:
                with self.engine().connect() as connection:
                    connection.execute(select(table).limit(1)).fetchall()
            except SQLAlchemyError as exc:
                raise self._database_error(exc) from None

    def read(self, stream: Stream, cursor: dict[str, Any] | None) -> Iterator[Batch]:
        spec = next(t for t in self.settings.all_tables() if t.stream_name == stream.name)
        table = self._table(spec)
        keys = list(stream.primary_key)
        cursor_col = table.c[spec.cursor_column]
        order = [cursor_col, *(table.c[k] for k in keys)]
        last_value = self._typed(cursor_col, (cursor or {}).get("value"))
        last_key = (cursor or {}).get("key")
        while True:
            query = select(table).order_by(*order).limit(self.context.batch_size)
            if last_value is not None:
                key_cols = [table.c[k] for k in keys]
                after_key = tuple_(*key_cols) > tuple_(*last_key) if len(keys) > 1 else key_cols[0] > last_key[0]
                query = query.where(or_(cursor_col > last_value, and_(cursor_col == last_value, after_key)))
            try:
                with self.engine().connect() as connection:
                    rows = [_arrow_ready(dict(r._mapping)) for r in connection.execute(query)]
            except SQLAlchemyError as exc:
                raise self._database_error(exc) from None
            if not rows:
                return
            last = rows[-1]
            last_value = last[spec.cursor_column]
            last_key = [jsonable(last[k]) for k in keys]
            table_batch = pa.Table.from_pylist(rows, schema=stream.schema)
            yield Batch(table_batch, {"value": jsonable(last_value), "key": last_key})
            if len(rows) < self.context.batch_size:
                return

    @staticmethod
    def _typed(column: Any, value: Any) -> Any:
        """A cursor value from JSON back into the column's Python type, so the comparison binds correctly."""
        if value is None:
            return None
        try:
            python_type = column.type.python_type
        except NotImplementedError:
            return value
        if issubclass(python_type, datetime):
            parsed = parse_timestamp(value)
            # Naive columns (SQLite, timestamp without time zone) compare against naive values.
            timezone_aware = getattr(column.type, "timezone", False)
            return parsed if timezone_aware else parsed.replace(tzinfo=None)
        if issubclass(python_type, date):
            return date.fromisoformat(value)
        if issubclass(python_type, Decimal):
            return Decimal(value)
        return value

    def _database_error(self, exc: SQLAlchemyError) -> ConnectorError:
        # Driver messages can echo the URL; keep only the first line and let the engine redact it.
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:200]
        lowered = reason.lower()
        if "password authentication failed" in lowered or "authentication failed" in lowered:
            return AuthError(f"the database refused the login: {reason}")
        if isinstance(exc, OperationalError):
            return Unreachable(f"the database could not be reached: {reason}")
        return ConnectorError(f"the database query failed: {reason}", hint="check the table and column settings")

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
