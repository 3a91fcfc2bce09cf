"""The generic REST connector, and the pagination and cursor helpers the SaaS connectors build on.

Pagination styles: `page` (page number + size, stops on a short page), `cursor` (a token in the
body, sent back as a parameter) and `link` (RFC 8288 `Link: <...>; rel="next"`, as GitHub does).

Incremental reads: the saved cursor is the largest `cursor_field` value committed so far. It is
sent to the API as `cursor_param` when the API can filter, and records below it are dropped on our
side too. Records equal to it are read again and deduplicated by primary key (the API may have
second-granularity timestamps; skipping equals could lose records). When the API returns records
in ascending cursor order (`sorted_by_cursor`), each page commits its cursor, so a failure midway
resumes from the last committed page; otherwise the cursor moves only once the stream is done.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any, Literal

import pyarrow as pa
from pydantic import Field, model_validator

from connectors.errors import MalformedResponse, SettingsError
from connectors.http import ApiKeyAuth, BasicAuth, BearerAuth, HttpClient, host_allowed
from connectors.sdk import (
    Batch,
    Connector,
    ConnectorSettings,
    CredentialSpec,
    Stream,
    jsonable,
    parse_timestamp,
    records_to_table,
)

FIELD_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "integer": pa.int64(),
    "number": pa.float64(),
    "boolean": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "strings": pa.list_(pa.string()),
}
FieldType = Literal["string", "integer", "number", "boolean", "timestamp", "strings"]


class Pagination(ConnectorSettings):
    type: Literal["none", "page", "cursor", "link"] = "none"
    page_param: str = "page"
    size_param: str = "per_page"
    page_size: int = Field(default=100, ge=1, le=10_000)
    start_page: int = 1
    cursor_param: str = "cursor"
    next_cursor_path: str = Field(default="next", description="Dotted path of the next-page token in the body.")
    max_pages: int = Field(default=10_000, ge=1, description="A guard against services that never stop paging.")


class RestStream(ConnectorSettings):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")
    path: str = Field(min_length=1)
    records_path: str = Field(default="", description="Dotted path of the record list in the body; empty: the body.")
    primary_key: list[str] = Field(default_factory=lambda: ["id"], min_length=1)
    cursor_field: str | None = None
    cursor_param: str | None = Field(default=None, description="Query parameter that carries the saved cursor.")
    sorted_by_cursor: bool = False
    fields: dict[str, FieldType] = Field(default_factory=dict)
    params: dict[str, str | int | bool] = Field(default_factory=dict)

    @model_validator(mode="after")
    def cursor_field_declared(self) -> RestStream:
        if self.cursor_field and self.cursor_field not in self.fields:
            raise ValueError(
                f"cursor_field {self.cursor_field!r} must be declared under fields with its type "
                "(timestamp, integer, number or string) so cursors compare correctly"
            )
        return self


class RestSettings(ConnectorSettings):
    base_url: str = Field(pattern=r"^https?://[^\s/]+", description="Root of the API, e.g. https://api.example.com/v2")
    streams: list[RestStream] = Field(min_length=1)
    pagination: Pagination = Pagination()
    auth: Literal["none", "bearer", "basic", "api_key"] = "none"
    username: str | None = None
    api_key_name: str = "X-API-Key"
    api_key_in: Literal["header", "query"] = "header"
    check_path: str | None = Field(default=None, description="Path `check` reads; default: the first stream's path.")

    @model_validator(mode="after")
    def basic_needs_username(self) -> RestSettings:
        if self.auth == "basic" and not self.username:
            raise ValueError("auth basic needs a username (the credential holds the password)")
        names = [s.name for s in self.streams]
        if len(set(names)) != len(names):
            raise ValueError(f"stream names must be unique: {names}")
        return self


def dig(body: Any, path: str) -> Any:
    """Follow a dotted path through nested dicts; an empty path is the body itself."""
    value = body
    for part in [p for p in path.split(".") if p]:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def paginate(
    client: HttpClient,
    path: str,
    *,
    params: dict[str, Any],
    pagination: Pagination,
    records_path: str,
) -> Iterator[list[dict[str, Any]]]:
    """Yield each page's records; raises MalformedResponse when a page is not a list of objects."""
    query = dict(params)
    url: str | None = path
    page = pagination.start_page
    if pagination.type == "page":
        query[pagination.size_param] = pagination.page_size
    elif pagination.type == "link":
        query.setdefault(pagination.size_param, pagination.page_size)
    for page_number in range(1, pagination.max_pages + 1):
        if pagination.type == "page":
            query[pagination.page_param] = page
        response = client.request("GET", url or path, params=query)
        body = client.json_of(response)
        records = dig(body, records_path)
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            where = f" at {records_path!r}" if records_path else ""
            raise MalformedResponse(
                f"GET {path} page {page_number}: expected a list of objects{where}, got {type(records).__name__}",
                integration=client.integration,
            )
        yield records
        if pagination.type == "none":
            return
        if pagination.type == "page":
            if len(records) < pagination.page_size:
                return
            page += 1
        elif pagination.type == "cursor":
            token = dig(body, pagination.next_cursor_path)
            if not token:
                return
            query[pagination.cursor_param] = token
        elif pagination.type == "link":
            next_link = response.links.get("next", {}).get("url")
            if not next_link:
                return
            # The next link carries every parameter itself.
            url, query = next_link, {}


def cursor_key(value: Any) -> Any:
    """A comparable form of a cursor value: timestamps as datetimes, numbers as numbers."""
    if isinstance(value, int | float):
        return value
    if isinstance(value, datetime):
        return parse_timestamp(value)
    try:
        return parse_timestamp(value)
    except (TypeError, ValueError):
        return str(value)


def max_cursor(current: Any, rows: list[dict[str, Any]], field_name: str) -> Any:
    best = current
    for row in rows:
        value = row.get(field_name)
        if value is not None and (best is None or cursor_key(value) > cursor_key(best)):
            best = value
    return best


def not_before(rows: list[dict[str, Any]], field_name: str, saved: Any) -> list[dict[str, Any]]:
    """Rows at or after the saved cursor (equal ones are re-read and deduplicated by primary key)."""
    if saved is None:
        return rows
    floor = cursor_key(saved)
    return [r for r in rows if r.get(field_name) is None or cursor_key(r[field_name]) >= floor]


def stream_schema(fields: dict[str, str], primary_key: list[str]) -> pa.Schema:
    declared = dict(fields)
    for key in primary_key:
        declared.setdefault(key, "string")
    return pa.schema([pa.field(name, FIELD_TYPES[kind]) for name, kind in declared.items()])


def stringify_keys(rows: list[dict[str, Any]], stream: Stream) -> list[dict[str, Any]]:
    """Undeclared primary-key fields are typed string; make scalar ids fit."""
    string_keys = [k for k in stream.primary_key if stream.schema.field(k).type == pa.string()]
    for row in rows:
        for key in string_keys:
            if row.get(key) is not None and not isinstance(row[key], str | dict | list):
                row[key] = str(row[key])
    return rows


class RestConnector(Connector):
    kind = "rest"
    description = "A generic paginated JSON REST API."
    Settings = RestSettings
    credential = CredentialSpec(required=False, description="token, password or API key, as `auth` says")

    settings: RestSettings

    def __init__(self, settings: Any, context: Any):
        super().__init__(settings, context)
        if self.settings.auth != "none" and not context.secret:
            raise SettingsError(
                f"auth {self.settings.auth!r} needs a credential",
                hint="add `credential: secret://name` or `credential: ${ENV_VAR}` to the integration",
            )

    @classmethod
    def stream_names(cls, settings: RestSettings) -> list[str]:  # type: ignore[override]
        return [s.name for s in settings.streams]

    @classmethod
    def hosts(cls, settings: RestSettings) -> list[str]:  # type: ignore[override]
        return [settings.base_url]

    def client(self) -> HttpClient:
        secret = self.context.secret or ""
        auth: Any = {
            "none": None,
            "bearer": BearerAuth(secret),
            "basic": BasicAuth(self.settings.username or "", secret),
            "api_key": ApiKeyAuth(secret, self.settings.api_key_name, self.settings.api_key_in),
        }[self.settings.auth]
        return self.context.http(self.settings.base_url, auth=auth)

    def streams(self) -> list[Stream]:
        return [
            Stream(
                name=s.name,
                primary_key=tuple(s.primary_key),
                schema=stream_schema(s.fields, s.primary_key),
                cursor_field=s.cursor_field,
            )
            for s in self.settings.streams
        ]

    def check(self) -> None:
        first = self.settings.streams[0]
        with self.client() as client:
            client.get_json(self.settings.check_path or first.path, params=first.params)

    def read(self, stream: Stream, cursor: dict[str, Any] | None) -> Iterator[Batch]:
        spec = next(s for s in self.settings.streams if s.name == stream.name)
        yield from read_rest_stream(self.client(), stream, cursor, spec, self.settings.pagination)


def read_rest_stream(
    client: HttpClient,
    stream: Stream,
    cursor: dict[str, Any] | None,
    spec: RestStream,
    pagination: Pagination,
) -> Iterator[Batch]:
    saved = (cursor or {}).get("value")
    params: dict[str, Any] = dict(spec.params)
    if spec.cursor_param and saved is not None:
        params[spec.cursor_param] = saved
    best = saved
    with client:
        for number, records in enumerate(
            paginate(client, spec.path, params=params, pagination=pagination, records_path=spec.records_path), 1
        ):
            rows = records
            if stream.cursor_field:
                rows = not_before(rows, stream.cursor_field, saved)
            table = records_to_table(stream, stringify_keys(rows, stream), where=f"page {number}")
            if stream.cursor_field:
                best = max_cursor(best, rows, stream.cursor_field)
            page_cursor = {"value": jsonable(best)} if stream.cursor_field and spec.sorted_by_cursor else None
            yield Batch(table, page_cursor if best is not None else None)
    if stream.cursor_field and not spec.sorted_by_cursor and best is not None and best != saved:
        yield Batch(records_to_table(stream, []), {"value": jsonable(best)})


def check_hosts(connector: type[Connector], settings: Any, allowed_hosts: list[str]) -> list[str]:
    """URLs these settings would contact that allowed_hosts does not cover (for config checks)."""
    return [url for url in connector.hosts(settings) if not host_allowed(url, allowed_hosts)]
