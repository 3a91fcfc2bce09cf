"""The connector SDK: what every connector declares and implements.

A connector is a class with
- `kind`: the name it is registered under (entry-point group `agentprovision.connectors`),
- `Settings`: a pydantic model of its settings (validated at config time and at sync time),
- `credential`: whether it needs one and what it is used for,
- `streams()`: the streams it reads, each with a primary key, an optional cursor field and an
  Arrow schema of its declared fields,
- `check()`: validate the settings against the real service (used when an integration is deployed),
- `read(stream, cursor)`: yield `Batch`es (an Arrow table or Polars frame plus the cursor to save
  once that batch is committed), starting after `cursor`,
- `actions`: operations it offers agents (create_issue, post_message, ...).

The sync engine (`connectors/sync.py`) owns everything about the ops store; a connector never
touches it, which is what keeps a custom connector small and testable.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import polars as pl
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, ValidationError

from connectors.errors import ActionError, ConnectorError, SchemaMismatch, SettingsError
from connectors.http import HttpClient, RetryPolicy

EXTRA_COLUMN = "_extra"
# Per-tenant file area under the config directory; file-based integrations read nothing outside it.
TENANT_FILES_DIR = "tenant_files"


class ConnectorSettings(BaseModel):
    """Base for connector settings: unknown keys are errors, as everywhere in admin config."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class CredentialSpec:
    required: bool
    description: str


NO_CREDENTIAL = CredentialSpec(required=False, description="none")


@dataclass(frozen=True)
class Stream:
    """One kind of record a connector reads.

    `schema` lists the declared fields with their Arrow types; a record's other fields travel in
    the `_extra` column (as JSON) when `extras` is true, so a source that adds fields does not
    break a sync, while a declared field changing type does (SchemaMismatch).
    """

    name: str
    primary_key: tuple[str, ...]
    schema: pa.Schema
    cursor_field: str | None = None
    extras: bool = True
    #: documents of this stream also go to the tenant's knowledge base
    knowledge_base: bool = False
    description: str = ""


@dataclass(frozen=True)
class Batch:
    """Records plus the cursor to save when they are committed; `cursor=None` keeps the saved one."""

    records: pa.Table | pl.DataFrame
    cursor: dict[str, Any] | None = None

    def table(self) -> pa.Table:
        return self.records.to_arrow() if isinstance(self.records, pl.DataFrame) else self.records


@dataclass(frozen=True)
class Action:
    """An operation a connector offers agents; `params` validates what the agent passes."""

    name: str
    description: str
    params: type[BaseModel]
    handler: Callable[..., dict[str, Any]]


@dataclass
class ConnectorContext:
    """Everything a connector instance may use: who it runs for and how it may reach the world."""

    tenant_id: str
    integration_id: str
    secret: str | None = None
    credential_ref: str | None = None
    allowed_hosts: tuple[str, ...] = ()
    base_dir: Path = field(default_factory=Path.cwd)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    batch_size: int = 500

    @property
    def name(self) -> str:
        return f"{self.tenant_id}/{self.integration_id}"

    def http(self, base_url: str, *, auth: Any = None, headers: Mapping[str, str] | None = None) -> HttpClient:
        return HttpClient(
            integration=self.name,
            base_url=base_url,
            allowed_hosts=self.allowed_hosts,
            auth=auth,
            retry=self.retry,
            headers=headers,
            credential_ref=self.credential_ref,
        )

    @property
    def files_root(self) -> Path:
        """The only directory this tenant's file-based integrations may read: <config>/tenant_files/<tenant>."""
        return (self.base_dir / TENANT_FILES_DIR / self.tenant_id).resolve()

    def path(self, value: str) -> Path:
        """A settings path, relative to the config directory, confined to this tenant's file area.

        Symlinks and `..` are resolved before the check, so no spelling of a path reaches another
        tenant's files or anything else on the machine.
        """
        path = (self.base_dir / Path(value).expanduser()).resolve()
        if not path.is_relative_to(self.files_root):
            raise SettingsError(
                f"{self.name}: path {value!r} is outside this tenant's file area; put the files under "
                f"{TENANT_FILES_DIR}/{self.tenant_id}/ in the config directory and point the path there"
            )
        return path


class Connector:
    """Base class of every connector. Subclasses set the class attributes and implement the methods."""

    kind: ClassVar[str]
    description: ClassVar[str] = ""
    Settings: ClassVar[type[ConnectorSettings]] = ConnectorSettings
    credential: ClassVar[CredentialSpec] = NO_CREDENTIAL

    def __init__(self, settings: Mapping[str, Any] | ConnectorSettings, context: ConnectorContext):
        self.context = context
        self.settings = settings if isinstance(settings, ConnectorSettings) else self.validate_settings(settings)
        if self.credential.required and not context.secret:
            raise SettingsError(
                f"kind {self.kind!r} needs a credential ({self.credential.description})",
                hint="add `credential: secret://name` or `credential: ${ENV_VAR}` to the integration",
            )

    # --- declared by subclasses ---------------------------------------------------------------

    def streams(self) -> list[Stream]:
        raise NotImplementedError

    def check(self) -> None:
        """Reach the service with these settings and this credential; raise a ConnectorError if not."""
        raise NotImplementedError

    def read(self, stream: Stream, cursor: dict[str, Any] | None) -> Iterator[Batch]:
        raise NotImplementedError

    def actions(self) -> dict[str, Action]:
        return {}

    # --- static knowledge, usable without a credential (config checks) --------------------------

    @classmethod
    def validate_settings(cls, settings: Mapping[str, Any]) -> ConnectorSettings:
        try:
            return cls.Settings.model_validate(dict(settings))
        except ValidationError as exc:
            raise SettingsError(settings_problem(exc)) from None

    @classmethod
    def stream_names(cls, settings: ConnectorSettings) -> list[str]:
        """Names of the streams these settings produce, without reaching the service."""
        return []

    @classmethod
    def hosts(cls, settings: ConnectorSettings) -> list[str]:
        """Hosts these settings will contact; config checks require each in allowed_hosts."""
        return []

    @classmethod
    def is_local(cls, settings: ConnectorSettings) -> bool:
        """True when these settings need no network (local files); `sync --local-only` runs only these."""
        return not cls.hosts(settings)

    # --- shared behaviour -------------------------------------------------------------------------

    def stream(self, name: str) -> Stream:
        for stream in self.streams():
            if stream.name == name:
                return stream
        known = ", ".join(s.name for s in self.streams()) or "none"
        raise SettingsError(f"kind {self.kind!r} has no stream {name!r}; its streams are: {known}")

    def run_action(self, name: str, params: Mapping[str, Any]) -> dict[str, Any]:
        actions = self.actions()
        if name not in actions:
            raise ActionError(
                f"kind {self.kind!r} offers no action {name!r}; it offers: {', '.join(actions) or 'none'}"
            )
        action = actions[name]
        try:
            parsed = action.params.model_validate(dict(params))
        except ValidationError as exc:
            raise ActionError(f"action {name!r}: {settings_problem(exc)}") from None
        return action.handler(parsed)


def settings_problem(exc: ValidationError) -> str:
    """A pydantic error as one line an admin can act on: `field.path: message; ...`."""
    parts = []
    for error in exc.errors():
        location = ".".join(str(part) for part in error["loc"]) or "settings"
        message = "unknown field" if error["type"] == "extra_forbidden" else error["msg"]
        parts.append(f"{location}: {message}")
    return "; ".join(parts)


# --- records to Arrow -----------------------------------------------------------------------------


def parse_timestamp(value: Any) -> datetime | None:
    """ISO 8601 (with Z, +00:00 or Jira's +0000) or epoch seconds to an aware UTC datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float | Decimal):
        return datetime.fromtimestamp(float(value), UTC)
    text = str(value).strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    if len(text) > 5 and text[-5] in "+-" and text[-4:].isdigit() and text[-3] != ":":
        text = text[:-2] + ":" + text[-2:]  # +0000 -> +00:00
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def records_to_table(stream: Stream, rows: list[dict[str, Any]], *, where: str = "") -> pa.Table:
    """Build a batch from JSON-like records, enforcing the declared field types.

    Declared fields become typed columns; a value that does not fit its declared type raises
    SchemaMismatch naming the stream, field and value kind. Other fields go to `_extra` as JSON.
    """
    columns: dict[str, pa.Array] = {}
    for schema_field in stream.schema:
        values = [row.get(schema_field.name) for row in rows]
        if pa.types.is_timestamp(schema_field.type):
            try:
                values = [parse_timestamp(v) for v in values]
            except (TypeError, ValueError):
                bad = next(v for v in values if not _parses_as_timestamp(v))
                raise _mismatch(stream, schema_field, bad, where) from None
        try:
            columns[schema_field.name] = pa.array(values, type=schema_field.type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            bad = next((v for v in values if not _fits(v, schema_field.type)), values[0] if values else None)
            raise _mismatch(stream, schema_field, bad, where) from None
    if stream.extras:
        declared = set(stream.schema.names)
        extras = [{k: v for k, v in row.items() if k not in declared} for row in rows]
        columns[EXTRA_COLUMN] = pa.array(
            [json.dumps(e, sort_keys=True, default=str) if e else None for e in extras], type=pa.string()
        )
    return pa.table(columns) if columns else pa.table({})


def _parses_as_timestamp(value: Any) -> bool:
    try:
        parse_timestamp(value)
        return True
    except (TypeError, ValueError):
        return False


def _fits(value: Any, arrow_type: pa.DataType) -> bool:
    try:
        pa.array([value], type=arrow_type)
        return True
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return False


def _mismatch(stream: Stream, schema_field: pa.Field, value: Any, where: str) -> SchemaMismatch:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    place = f" ({where})" if where else ""
    return SchemaMismatch(
        f"stream {stream.name!r}, field {schema_field.name!r}: declared {schema_field.type} but the source sent "
        f"{type(value).__name__} {shown}{place}"
    )


def conform(stream: Stream, table: pa.Table) -> tuple[pa.Table, list[str]]:
    """Check a batch against its stream: declared fields must be present-or-null and castable.

    Returns the table cast to the declared types and the names of columns the stream did not
    declare (schema drift, reported in sync history).
    """
    for schema_field in stream.schema:
        if schema_field.name not in table.column_names:
            table = table.append_column(schema_field.name, pa.nulls(table.num_rows, type=schema_field.type))
            continue
        column = table.column(schema_field.name)
        if column.type != schema_field.type:
            try:
                table = table.set_column(
                    table.column_names.index(schema_field.name), schema_field.name, column.cast(schema_field.type)
                )
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                raise SchemaMismatch(
                    f"stream {stream.name!r}, field {schema_field.name!r}: declared {schema_field.type} "
                    f"but the source sent {column.type}"
                ) from None
    missing_key = [k for k in stream.primary_key if table.num_rows and table.column(k).null_count]
    if missing_key:
        raise SchemaMismatch(f"stream {stream.name!r}: primary key field {missing_key[0]!r} is empty in some records")
    declared = set(stream.schema.names) | {EXTRA_COLUMN}
    return table, [name for name in table.column_names if name not in declared]


def jsonable(value: Any) -> Any:
    """A value as it is stored in the ops store's JSON columns."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def table_rows(table: pa.Table) -> list[dict[str, Any]]:
    """Rows of a batch as JSON-ready dicts, with `_extra` folded back into each record."""
    rows = []
    for row in table.to_pylist():
        extra = row.pop(EXTRA_COLUMN, None)
        record = {k: jsonable(v) for k, v in row.items()}
        if extra:
            for key, value in json.loads(extra).items():
                record.setdefault(key, value)
        rows.append(record)
    return rows


def wrap_error(exc: BaseException, integration: str) -> ConnectorError:
    """Any exception as a ConnectorError for this integration, so no raw traceback reaches an admin.

    The message keeps the exception's first line; callers redact it against resolved secrets.
    """
    if isinstance(exc, ConnectorError):
        return exc.for_integration(integration)
    detail = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    return ConnectorError(
        f"unexpected {type(exc).__name__} inside the connector" + (f": {detail}" if detail else ""),
        hint="this is a connector bug; the sync history and logs have the details",
        integration=integration,
    )
