"""Files: CSV, JSON lines and Parquet from a directory, read with Polars.

Each configured stream is a glob under `path`. Incremental reads go by file: the cursor is the
(modification time, name) of the last file committed, files are read oldest first, and each file
is one batch, so a failure midway resumes at the first file not yet committed. A file rewritten
in place gets a newer mtime and is read again; its rows are deduplicated by primary key.
A stream's schema is its first file's; later files may add columns (reported as schema drift)
but a column whose type cannot be cast to the first file's type stops the sync.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import polars as pl
import pyarrow as pa
from pydantic import Field

from connectors.errors import MalformedResponse, SettingsError
from connectors.sdk import Batch, Connector, ConnectorSettings, Stream

READERS = {
    "csv": lambda path: pl.read_csv(path, try_parse_dates=True),
    "jsonl": lambda path: pl.read_ndjson(path),
    "parquet": lambda path: pl.read_parquet(path),
}
SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}


class FileStream(ConnectorSettings):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")
    pattern: str = Field(min_length=1, description="Glob under `path`, e.g. incidents/*.jsonl")
    format: Literal["auto", "csv", "jsonl", "parquet"] = "auto"
    primary_key: list[str] = Field(min_length=1)


class FilesSettings(ConnectorSettings):
    path: str = Field(min_length=1, description="Directory; relative paths are under the config directory.")
    streams: list[FileStream] = Field(min_length=1)


class FilesConnector(Connector):
    kind = "files"
    description = "CSV, JSON lines and Parquet files from a directory (Polars)."
    Settings = FilesSettings

    settings: FilesSettings

    @classmethod
    def stream_names(cls, settings: FilesSettings) -> list[str]:  # type: ignore[override]
        return [s.name for s in settings.streams]

    @property
    def root(self) -> Path:
        return self.context.path(self.settings.path)

    def check(self) -> None:
        # An empty drop folder is valid (nothing to read yet); a missing one is a settings mistake.
        if not self.root.is_dir():
            raise SettingsError(f"path {self.settings.path!r} is not a directory (looked at {self.root})")
        for spec in self.settings.streams:
            for path in self._files(spec)[:1]:
                self._load(spec, path)

    def streams(self) -> list[Stream]:
        return [self._stream(spec) for spec in self.settings.streams]

    def _stream(self, spec: FileStream) -> Stream:
        files = self._files(spec)
        schema = self._load(spec, files[0]).to_arrow().schema if files else pa.schema([])
        for key in spec.primary_key:
            if files and key not in schema.names:
                raise SettingsError(f"stream {spec.name!r}: primary key {key!r} is not a column of {files[0].name}")
        return Stream(name=spec.name, primary_key=tuple(spec.primary_key), schema=schema, cursor_field=None)

    def _files(self, spec: FileStream) -> list[Path]:
        if not self.root.is_dir():
            raise SettingsError(f"path {self.settings.path!r} is not a directory (looked at {self.root})")
        files = [p for p in self.root.glob(spec.pattern) if p.is_file()]
        return sorted(files, key=lambda p: (p.stat().st_mtime_ns, str(p.relative_to(self.root))))

    def _load(self, spec: FileStream, path: Path) -> pl.DataFrame:
        kind = spec.format if spec.format != "auto" else SUFFIXES.get(path.suffix.lower())
        if kind is None:
            raise SettingsError(
                f"stream {spec.name!r}: cannot tell the format of {path.name}; set format to csv, jsonl or parquet"
            )
        try:
            return READERS[kind](path)
        except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            raise MalformedResponse(f"stream {spec.name!r}: {path.name} is not valid {kind}: {first}") from None

    def read(self, stream: Stream, cursor: dict[str, Any] | None) -> Iterator[Batch]:
        spec = next(s for s in self.settings.streams if s.name == stream.name)
        after = (cursor or {}).get("mtime_ns", -1), (cursor or {}).get("file", "")
        for path in self._files(spec):
            relative = str(path.relative_to(self.root))
            position = (path.stat().st_mtime_ns, relative)
            if position <= after:
                continue
            frame = self._load(spec, path)
            yield Batch(frame, {"mtime_ns": position[0], "file": relative})
