"""Documentation: Markdown files from a directory, or pages over HTTP, feeding the knowledge base.

Records of the `documents` stream are also written to the tenant's knowledge base (`kb_documents`)
by the sync engine, in the same transaction; `connectors.kb.search` reads them for kb_search.
Local files are read incrementally by (mtime, path) like the files connector; pages are fetched
whole every sync (they carry no reliable modification time) and unchanged ones are recognised by
their content hash, so they neither rewrite the knowledge base nor fire triggers.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
from pydantic import Field, model_validator

from connectors.errors import SettingsError
from connectors.sdk import Batch, Connector, ConnectorSettings, Stream

DOCUMENT_SCHEMA = pa.schema(
    [
        pa.field("doc_id", pa.string()),
        pa.field("title", pa.string()),
        pa.field("source", pa.string()),
        pa.field("body", pa.string()),
        pa.field("content_hash", pa.string()),
        pa.field("modified_at", pa.timestamp("us", tz="UTC")),
    ]
)
HEADING = re.compile(r"^#\s+(.+?)\s*#*\s*$", re.M)


class DocsSettings(ConnectorSettings):
    path: str | None = Field(default=None, description="Directory of Markdown files (relative: config directory).")
    pattern: str = "**/*.md"
    pages: list[str] = Field(default_factory=list, description="URLs of Markdown or HTML pages.")

    @model_validator(mode="after")
    def a_source(self) -> DocsSettings:
        if not self.path and not self.pages:
            raise ValueError("give path (a directory of Markdown files) or pages (URLs), or both")
        for page in self.pages:
            if not re.match(r"^https?://[^\s/]+", page):
                raise ValueError(f"pages: {page!r} is not an http(s) URL")
        return self


class _TextOfHtml(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.title = ""
        self._skip = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        self._in_title = tag == "title"

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1
        if tag in ("p", "div", "li", "h1", "h2", "h3", "br", "tr"):
            self.parts.append("\n")
        self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data.strip()
        elif not self._skip:
            self.parts.append(data)


def document(doc_id: str, source: str, text: str, modified_at: datetime | None, fallback_title: str) -> dict[str, Any]:
    heading = HEADING.search(text)
    return {
        "doc_id": doc_id,
        "title": heading.group(1) if heading else fallback_title,
        "source": source,
        "body": text,
        "content_hash": hashlib.sha256(text.encode()).hexdigest(),
        "modified_at": modified_at,
    }


class DocsConnector(Connector):
    kind = "docs"
    description = "Markdown documentation (files or pages) feeding the tenant's knowledge base."
    Settings = DocsSettings

    settings: DocsSettings

    @classmethod
    def stream_names(cls, settings: DocsSettings) -> list[str]:  # type: ignore[override]
        return ["documents"]

    @classmethod
    def hosts(cls, settings: DocsSettings) -> list[str]:  # type: ignore[override]
        return list(settings.pages)

    def streams(self) -> list[Stream]:
        return [Stream("documents", ("doc_id",), DOCUMENT_SCHEMA, extras=False, knowledge_base=True)]

    @property
    def root(self) -> Path | None:
        return self.context.path(self.settings.path) if self.settings.path else None

    def check(self) -> None:
        root = self.root
        if root is not None and not root.is_dir():
            raise SettingsError(f"path {self.settings.path!r} is not a directory (looked at {root})")
        for page in self.settings.pages:
            with self.context.http(page) as client:
                client.request("GET", page)

    def read(self, stream: Stream, cursor: dict[str, Any] | None) -> Iterator[Batch]:
        root = self.root
        position = (cursor or {}).get("mtime_ns", -1), (cursor or {}).get("file", "")
        if root is not None:
            if not root.is_dir():
                raise SettingsError(f"path {self.settings.path!r} is not a directory (looked at {root})")
            files = sorted(
                (p for p in root.glob(self.settings.pattern) if p.is_file()),
                key=lambda p: (p.stat().st_mtime_ns, str(p.relative_to(root))),
            )
            batch: list[dict[str, Any]] = []
            for path in files:
                relative = str(path.relative_to(root))
                mtime = path.stat().st_mtime_ns
                if (mtime, relative) <= position:
                    continue
                modified = datetime.fromtimestamp(mtime / 1e9, UTC)
                text = path.read_text(encoding="utf-8", errors="replace")
                batch.append(document(relative, f"file:{relative}", text, modified, path.stem.replace("-", " ")))
                position = (mtime, relative)
                if len(batch) >= self.context.batch_size:
                    yield Batch(pa.Table.from_pylist(batch, schema=DOCUMENT_SCHEMA), _cursor(position))
                    batch = []
            if batch:
                yield Batch(pa.Table.from_pylist(batch, schema=DOCUMENT_SCHEMA), _cursor(position))
        pages = [self._page(url) for url in self.settings.pages]
        if pages:
            yield Batch(pa.Table.from_pylist(pages, schema=DOCUMENT_SCHEMA), _cursor(position) if root else None)

    def _page(self, url: str) -> dict[str, Any]:
        with self.context.http(url) as client:
            response = client.request("GET", url)
        text = response.text
        title = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1] or url
        if "html" in response.headers.get("content-type", ""):
            parser = _TextOfHtml()
            parser.feed(text)
            text = re.sub(r"\n\s*\n+", "\n\n", "".join(parser.parts)).strip()
            title = parser.title or title
            if not HEADING.search(text):
                text = f"# {title}\n\n{text}"
        return document(url, url, text, None, title)


def _cursor(position: tuple[int, str]) -> dict[str, Any]:
    return {"mtime_ns": position[0], "file": position[1]}
