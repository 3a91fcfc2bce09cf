"""The tenant knowledge base: documents written by documentation syncs, searched with BM25.

Documents live in the ops store (`kb_documents`), one row per (tenant, integration, document), so
they share its transactions, tenancy and backups. Search splits documents into sections at their
Markdown headings and ranks sections with BM25 over the tenant's own documents only; this is
plain Python so it behaves the same on SQLite and PostgreSQL. At a scale where reading a tenant's
documents per query is too slow, the same interface can move to PostgreSQL full-text search.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from agentprovision.store.connector_models import KbDocument
from agentprovision.store.db import session_factory, transaction

TOKEN = re.compile(r"[a-z0-9]+")
SECTION = re.compile(r"^#{1,6}\s+.*$", re.M)
K1, B = 1.2, 0.75


def upsert_documents(session: Session, *, tenant_id: str, integration_id: str, rows: list[dict[str, Any]]) -> int:
    """Insert or replace documents by doc_id; returns how many changed."""
    changed = 0
    now = datetime.now(UTC)
    for row in rows:
        document = session.get(KbDocument, (tenant_id, integration_id, row["doc_id"]))
        if document is not None and document.content_hash == row["content_hash"]:
            continue
        if document is None:
            document = KbDocument(tenant_id=tenant_id, integration_id=integration_id, doc_id=row["doc_id"])
            session.add(document)
        document.title = (row.get("title") or row["doc_id"])[:500]
        document.source = row.get("source") or row["doc_id"]
        document.body = row.get("body") or ""
        document.content_hash = row["content_hash"]
        document.updated_at = now
        changed += 1
    session.flush()
    return changed


@dataclass(frozen=True)
class Hit:
    integration_id: str
    doc_id: str
    title: str
    heading: str
    snippet: str
    score: float


def tokens(text: str) -> list[str]:
    return TOKEN.findall(text.lower())


def sections(body: str) -> list[tuple[str, str]]:
    """(heading, text) pieces of a Markdown document; text before the first heading has none."""
    marks = [m.start() for m in SECTION.finditer(body)]
    starts = [0, *marks] if not marks or marks[0] != 0 else marks
    pieces = []
    for index, start in enumerate(starts):
        end = starts[index + 1] if index + 1 < len(starts) else len(body)
        chunk = body[start:end].strip()
        if not chunk:
            continue
        first, _, rest = chunk.partition("\n")
        heading = first.lstrip("#").strip() if first.startswith("#") else ""
        pieces.append((heading, chunk))
    return pieces


def search(engine: Engine, tenant_id: str, query: str, *, limit: int = 5) -> list[Hit]:
    """The best-matching sections of this tenant's documents; an empty list when nothing matches."""
    terms = tokens(query)
    if not terms:
        return []
    with transaction(session_factory(engine)) as session:
        documents = list(session.scalars(select(KbDocument).where(KbDocument.tenant_id == tenant_id)))
    units = []
    for document in documents:
        for heading, text in sections(document.body):
            units.append((document, heading, text, Counter(tokens(f"{document.title} {text}"))))
    if not units:
        return []
    average = sum(sum(c.values()) for *_, c in units) / len(units)
    frequency = Counter(term for *_, c in units for term in set(c))
    hits = []
    for document, heading, text, counts in units:
        length = sum(counts.values())
        score = 0.0
        for term in terms:
            if not counts[term]:
                continue
            idf = math.log(1 + (len(units) - frequency[term] + 0.5) / (frequency[term] + 0.5))
            score += idf * counts[term] * (K1 + 1) / (counts[term] + K1 * (1 - B + B * length / average))
        if score > 0:
            hits.append(Hit(document.integration_id, document.doc_id, document.title, heading, _snippet(text), score))
    hits.sort(key=lambda h: (-h.score, h.doc_id, h.heading))
    return hits[:limit]


def _snippet(text: str, size: int = 280) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= size else flat[: size - 1] + "…"
