"""Erasing one data subject (GDPR Art. 17) from everything the platform wrote about them in one tenant.

The subject is named by e-mail; the names, phone numbers or other forms the request gives (and the
name the ops store holds for that user) are erased with it. Every occurrence is replaced by one
pseudonym, `erased-<12 hex>`, taken from a random erasure id rather than derived from the
subject, so nothing kept can lead back to them while counts and joins still add up.

Where it looks, always limited to the tenant's rows plus rows that belong to no tenant:
- the ops store: every text and JSON column of every table (users, events and their prompts,
  task inputs, the knowledge base, synced connector records, config versions, ...). The user row is
  marked `erased`. On SQLite, freed pages are zeroed and the file is vacuumed so no old copy stays.
- the audit trail: records naming the subject are redacted through the one narrow path the
  database allows (`erase_personal_fields`), and a `privacy.erase` tombstone names them; the chains
  still verify.
- the warehouse: every text column of every table of the DuckDB file (raw, staging, marts,
  snapshots), then the file is rebuilt (so freed blocks keep nothing) and republished.
- text files under the state directory (evidence packs, exports), redacted in place; an evidence
  pack's manifest is recomputed for the files that changed.
A final scan of all of it is part of the report; erasure is complete only if it finds nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import duckdb
from sqlalchemy import JSON, Engine, String, Table, Text, and_, cast, func, or_, select, text, update
from sqlalchemy.orm import Session

from agentprovision.config.schema import AdminConfig
from agentprovision.settings import Settings
from agentprovision.store import models as m
from agentprovision.store.audit import ERASE_ACTION, Redaction, append_audit, erase_personal_fields
from agentprovision.store.db import session_factory, transaction
from agentprovision.store.registry import Base
from agentprovision.warehouse import publish

MIN_IDENTIFIER = 4  # shorter strings would pseudonymise unrelated text
AUDIT_TABLES = {"audit_records", "audit_seals"}  # changed only through erase_personal_fields
DUCKDB_TEXT_TYPES = ("VARCHAR", "JSON")
UNSEARCHABLE = -1  # a store the final scan could not read counts as not clean


class PrivacyError(Exception):
    """An erasure request that cannot be carried out as given; the message says why."""


@dataclass
class ErasureReport:
    tenant_id: str
    erasure_id: str
    pseudonym: str
    identifiers: int  # how many forms of the subject were searched for (never the forms themselves)
    changed: dict[str, int] = field(default_factory=dict)  # "store:table" -> rows rewritten
    audit_records_erased: int = 0
    files_redacted: list[str] = field(default_factory=list)
    remaining: dict[str, int] = field(default_factory=dict)  # final scan; empty when the erasure is complete
    warnings: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.remaining

    def render(self) -> str:
        lines = [
            f"erasure {self.erasure_id} in tenant {self.tenant_id}: {self.identifiers} identifiers "
            f"replaced by {self.pseudonym} (e-mail: {self.pseudonym}@erased.invalid)",
        ]
        for where, rows in sorted(self.changed.items()):
            lines.append(f"  erased  {where:<48} {rows} rows")
        lines.append(f"  erased  {'ops:audit_records (redacted, tombstoned)':<48} {self.audit_records_erased} rows")
        for path in self.files_redacted:
            lines.append(f"  erased  file {path}")
        lines.append("final scan:")
        if self.remaining:
            for where, rows in sorted(self.remaining.items()):
                found = "could not be searched" if rows == UNSEARCHABLE else f"{rows}"
                lines.append(f"  STILL FOUND  {where}: {found}")
        else:
            lines.append("  0 rows and 0 files still hold the subject's identifiers")
        lines.extend(f"warning: {warning}" for warning in self.warnings)
        return "\n".join(lines)


def _re2(forms: list[str] | tuple[str, ...]) -> str:
    """An alternation for DuckDB's RE2 (escape only what RE2 treats as special)."""
    return "|".join(re.sub(r"([\\.^$|?*+()\[\]{}\-])", r"\\\1", f) for f in forms)


@dataclass(frozen=True)
class Matcher:
    """The subject's identifiers, matched case-insensitively, in plain and JSON-escaped form.

    An e-mail is replaced by an e-mail shaped pseudonym (in the reserved `.invalid` domain), so
    stored config versions that name the subject still validate; every other form by the plain one.
    """

    forms: tuple[str, ...]
    pseudonym: str

    @property
    def email_pseudonym(self) -> str:
        return f"{self.pseudonym}@erased.invalid"

    @cached_property
    def re2_passes(self) -> list[tuple[str, str]]:
        """(pattern, replacement) for DuckDB: e-mail forms first, then the rest."""
        emails = [f for f in self.forms if "@" in f]
        others = [f for f in self.forms if "@" not in f]
        passes = [(_re2(emails), self.email_pseudonym), (_re2(others), self.pseudonym)]
        return [(pattern, replacement) for pattern, replacement in passes if pattern]

    @classmethod
    def build(cls, identifiers: set[str], pseudonym: str) -> Matcher:
        forms: set[str] = set()
        for identifier in identifiers:
            forms.add(identifier)
            forms.add(json.dumps(identifier)[1:-1])  # how JSON text stores it (non-ASCII escaped)
        return cls(tuple(sorted(forms, key=lambda f: (-len(f), f))), pseudonym)

    @cached_property
    def regex(self) -> re.Pattern[str]:
        return re.compile("|".join(re.escape(f) for f in self.forms), re.IGNORECASE)

    @cached_property
    def re2(self) -> str:
        return _re2(self.forms)

    def redact(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.regex.sub(lambda m: self.email_pseudonym if "@" in m.group(0) else self.pseudonym, value)
        if isinstance(value, list):
            return [self.redact(v) for v in value]
        if isinstance(value, dict):
            return {self.redact(k): self.redact(v) for k, v in value.items()}
        return value

    def found_in_bytes(self, data: bytes) -> bool:
        lowered = data.lower()
        return any(form.lower().encode() in lowered for form in self.forms)


def erase_subject(
    config: AdminConfig | None,
    engine: Engine,
    settings: Settings,
    tenant_id: str,
    subject: str,
    actor: str,
    *,
    also: list[str] | tuple[str, ...] = (),
    source: str = "cli",
) -> ErasureReport:
    """Erase `subject` (an e-mail) and the other forms in `also` from tenant `tenant_id`; see the module doc."""
    subject = subject.strip().lower()
    if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", subject):
        raise PrivacyError(f"the subject must be an e-mail address, got {subject!r}")
    factory = session_factory(engine)
    with transaction(factory) as session:
        if session.get(m.Tenant, tenant_id) is None:
            raise PrivacyError(f"unknown tenant {tenant_id!r}")
        identifiers = _identifiers(session, tenant_id, subject, also)
    erasure_id = str(uuid.uuid4())
    pseudonym = f"erased-{erasure_id.replace('-', '')[:12]}"
    matcher = Matcher.build(identifiers, pseudonym)
    report = ErasureReport(tenant_id, erasure_id, pseudonym, len(identifiers))
    report.warnings.extend(_config_warnings(config, tenant_id, subject))

    with transaction(factory) as session:
        if engine.dialect.name == "sqlite":
            session.execute(text("PRAGMA secure_delete = ON"))  # freed space is zeroed, not left readable
        for table in _tables():
            changed = _scrub_table(session, table, tenant_id, subject, matcher)
            if changed:
                report.changed[f"ops:{table.name}"] = changed
        report.audit_records_erased = _erase_audit(session, tenant_id, matcher, actor, erasure_id, report, source)
    purge_failed = engine.dialect.name == "sqlite" and not _purge_sqlite(engine, report)

    try:
        for path in _duckdb_files(settings):
            changed = _scrub_duckdb(path, tenant_id, matcher)
            for where, rows in changed.items():
                report.changed[f"warehouse:{path.name}:{where}"] = rows
        _rebuild_and_republish(settings, report)
    except duckdb.Error as exc:
        # Most likely a pipeline run holds the file. The ops store is already erased; erasing again is safe.
        report.warnings.append(
            f"the warehouse could not be erased ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
            "run the same `privacy erase` again when no pipeline run holds it"
        )
    report.files_redacted = _redact_files(settings, matcher, engine)

    report.remaining = scan(engine, settings, tenant_id, matcher)
    if purge_failed:
        report.remaining["ops:sqlite free pages"] = UNSEARCHABLE
    with transaction(factory) as session:
        append_audit(
            session,
            actor=actor,
            action="privacy.verify",
            target_type="subject",
            target_id=pseudonym,
            tenant_id=tenant_id,
            source=source,
            outcome="success" if report.complete else "failure",
            details={
                "erasure_id": erasure_id,
                "warehouse": {k: v for k, v in report.changed.items() if k.startswith("warehouse:")},
                "files_redacted": len(report.files_redacted),
                "remaining": report.remaining,
            },
        )
    return report


def _identifiers(session: Session, tenant_id: str, subject: str, also: list[str] | tuple[str, ...]) -> set[str]:
    identifiers = {subject}
    user = session.scalar(
        select(m.User).where(
            func.lower(m.User.user_id) == subject, or_(m.User.tenant_id == tenant_id, m.User.tenant_id.is_(None))
        )
    )
    if user is not None and user.name.strip():
        identifiers.add(user.name.strip())
    for form in also:
        form = form.strip()
        if len(form) < MIN_IDENTIFIER:
            raise PrivacyError(f"identifier {form!r} is shorter than {MIN_IDENTIFIER} characters; give a fuller form")
        identifiers.add(form)
    return identifiers


def _config_warnings(config: AdminConfig | None, tenant_id: str, subject: str) -> list[str]:
    if config is None:
        return []
    named = [u for u in config.platform.users if u.id.lower() == subject]
    for tenant_file in config.tenants:
        if tenant_file.tenant.id == tenant_id:
            named += [u for u in tenant_file.users if u.id.lower() == subject]
            if any(a.owner.lower() == subject for a in tenant_file.agents):
                named.append(subject)  # type: ignore[arg-type]
    if not named:
        return []
    return [
        "the config directory still names this subject (as a user or agent owner); remove them from it and "
        "`agentprovision apply`, or the next apply writes their e-mail and name into the ops store again"
    ]


def _tables() -> list[Table]:
    return [t for t in Base.metadata.sorted_tables if t.name not in AUDIT_TABLES]


def _text_columns(table: Table) -> list[Any]:
    return [c for c in table.columns if isinstance(c.type, String | Text | JSON)]


def _scope(table: Table, tenant_id: str) -> Any:
    """This tenant's rows and rows of no tenant; another tenant's rows are never touched."""
    if "tenant_id" not in table.c:
        return None
    return or_(table.c.tenant_id == tenant_id, table.c.tenant_id.is_(None))


def _like(column: Any, form: str) -> Any:
    escaped = form.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return func.lower(cast(column, Text)).like(f"%{escaped}%", escape="\\")


def _matching(table: Table, tenant_id: str, matcher: Matcher, columns: list[Any] | None = None) -> Any:
    columns = columns if columns is not None else _text_columns(table)
    condition = or_(*[_like(c, f) for c in columns for f in matcher.forms])
    scope = _scope(table, tenant_id)
    return condition if scope is None else and_(scope, condition)


def _scrub_table(session: Session, table: Table, tenant_id: str, subject: str, matcher: Matcher) -> int:
    columns = _text_columns(table)
    if not columns:
        return 0
    keys = list(table.primary_key.columns)
    changed = 0
    rows = session.execute(select(table).where(_matching(table, tenant_id, matcher, columns))).mappings().all()
    for row in rows:
        values = {c.name: matcher.redact(row[c.name]) for c in columns if matcher.redact(row[c.name]) != row[c.name]}
        if table.name == "users" and str(row["user_id"]).lower() == subject:
            values["status"] = "erased"
        if not values:
            continue
        session.execute(update(table).where(*[k == row[k.name] for k in keys]).values(**values))
        changed += 1
    return changed


def _erase_audit(
    session: Session,
    tenant_id: str,
    matcher: Matcher,
    actor: str,
    erasure_id: str,
    report: ErasureReport,
    source: str,
) -> int:
    records = m.AuditRecord.__table__
    query = (
        select(m.AuditRecord)
        .where(
            _matching(records, tenant_id, matcher, [records.c.actor, records.c.target_id, records.c.details]),
            m.AuditRecord.action != ERASE_ACTION,
        )
        .order_by(m.AuditRecord.seq)
    )
    by_chain: dict[str | None, list[Redaction]] = defaultdict(list)
    for record in session.scalars(query):
        by_chain[record.tenant_id].append(
            Redaction(
                record.record_id,
                matcher.redact(record.actor),
                matcher.redact(record.target_id),
                matcher.redact(record.details),
            )
        )
    summary = {"changed": dict(report.changed), "identifiers": report.identifiers}
    erased = 0
    # The tenant's own chain always gets the tombstone: it is the record that the erasure happened.
    for chain in [tenant_id, *(c for c in by_chain if c != tenant_id)]:
        redactions = by_chain.get(chain, [])
        erase_personal_fields(
            session,
            tenant_id=chain,
            redactions=redactions,
            actor=actor,
            erasure_id=erasure_id,
            details={**summary, "subject_tenant": tenant_id},
            source=source,
        )
        erased += len(redactions)
    return erased


def _purge_sqlite(engine: Engine, report: ErasureReport) -> bool:
    """Fold the WAL back and rebuild the file, so no page still holds what was overwritten."""
    # A raw connection: VACUUM and checkpoints cannot run inside the BEGIN IMMEDIATE the engine issues.
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        for statement in ("PRAGMA wal_checkpoint(TRUNCATE)", "VACUUM", "PRAGMA wal_checkpoint(TRUNCATE)"):
            cursor.execute(statement)
        cursor.close()
        return True
    except sqlite3.Error as exc:
        report.warnings.append(
            f"the ops store file could not be vacuumed ({exc}); old values may remain in its free pages "
            "until `VACUUM` runs: run the same `privacy erase` again when the store is idle"
        )
        return False
    finally:
        connection.close()


def _duckdb_files(settings: Settings) -> list[Path]:
    return [p for p in (settings.duckdb_path,) if p.exists()]


def _duckdb_tables(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], tuple[list[str], bool]]:
    """(schema, table) -> (text columns, has tenant_id) for every base table of the open file."""
    tables: dict[tuple[str, str], tuple[list[str], bool]] = {}
    rows = con.execute("""
        SELECT c.table_schema, c.table_name, c.column_name, c.data_type
        FROM information_schema.columns c
        JOIN information_schema.tables t
          ON t.table_catalog = c.table_catalog AND t.table_schema = c.table_schema AND t.table_name = c.table_name
        WHERE t.table_type = 'BASE TABLE' AND c.table_catalog = current_database()
        ORDER BY 1, 2, c.ordinal_position
    """).fetchall()
    for schema, table, column, data_type in rows:
        columns, tenant = tables.get((schema, table), ([], False))
        if data_type in DUCKDB_TEXT_TYPES:
            columns.append(column)
        tables[(schema, table)] = (columns, tenant or column == "tenant_id")
    return {key: value for key, value in tables.items() if value[0]}


def _duckdb_where(columns: list[str], has_tenant: bool) -> str:
    scope = "(tenant_id = $tenant OR tenant_id IS NULL)" if has_tenant else "true"
    found = " OR ".join(f"regexp_matches(\"{c}\", $pattern, 'i')" for c in columns)
    return f"{scope} AND ({found})"


def _duckdb_params(matcher: Matcher, tenant_id: str, has_tenant: bool) -> dict[str, str]:
    return {"pattern": matcher.re2} | ({"tenant": tenant_id} if has_tenant else {})


def _scrub_duckdb(path: Path, tenant_id: str, matcher: Matcher) -> dict[str, int]:
    changed: dict[str, int] = {}
    with duckdb.connect(str(path)) as con:
        con.execute("BEGIN TRANSACTION")
        for (schema, table), (columns, has_tenant) in _duckdb_tables(con).items():
            where = _duckdb_where(columns, has_tenant)
            params = _duckdb_params(matcher, tenant_id, has_tenant)
            count = con.execute(f'SELECT count(*) FROM "{schema}"."{table}" WHERE {where}', params).fetchone()[0]
            if count:
                for pattern, replacement in matcher.re2_passes:
                    sets = ", ".join(f'"{c}" = regexp_replace("{c}", $p, $r, \'gi\')' for c in columns)
                    update_sql = f'UPDATE "{schema}"."{table}" SET {sets} WHERE {where}'
                    con.execute(update_sql, params | {"p": pattern, "r": replacement})
                changed[f"{schema}.{table}"] = count
        con.execute("COMMIT")
    return changed


def _rebuild_and_republish(settings: Settings, report: ErasureReport) -> None:
    """Copy the warehouse into a fresh file (freed blocks keep old values) and publish the clean copy."""
    source = settings.duckdb_path
    if not source.exists():
        return
    fresh = source.with_name(source.stem + ".erasure.tmp")
    fresh.unlink(missing_ok=True)
    with duckdb.connect(str(source)) as con:
        con.execute(f"ATTACH '{fresh}' AS fresh")
        database = con.execute("SELECT current_database()").fetchone()[0]
        con.execute(f'COPY FROM DATABASE "{database}" TO fresh')
        con.execute("DETACH fresh")
    os.replace(fresh, source)
    Path(str(source) + ".wal").unlink(missing_ok=True)
    if settings.published_duckdb_path.exists():
        publish(source, settings.published_duckdb_path)
    else:
        report.warnings.append("no published warehouse copy existed; nothing republished")


def _redact_files(settings: Settings, matcher: Matcher, engine: Engine) -> list[str]:
    redacted: list[Path] = []
    stores = _store_files(settings, engine)
    for path in _state_files(settings.state_dir):
        if path.resolve() in stores:
            continue
        data = path.read_bytes()
        if b"\0" in data or not matcher.found_in_bytes(data):
            continue
        try:
            content = data.decode()
        except UnicodeDecodeError:
            continue  # a binary file: the final scan reports it
        path.write_text(matcher.redact(content))
        redacted.append(path)
    for directory in {p.parent for p in redacted}:
        _refresh_manifest(directory)
    return [str(p) for p in redacted]


def _refresh_manifest(directory: Path) -> None:
    """An evidence pack's manifest must describe the redacted files, or the pack fails its own check."""
    manifest = directory / "MANIFEST.sha256"
    if not manifest.exists():
        return
    digests = {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.iterdir())
        if p.is_file() and p.name != manifest.name
    }
    manifest.write_text("".join(f"{digest}  {name}\n" for name, digest in digests.items()))


def _state_files(state_dir: Path) -> list[Path]:
    return [p for p in sorted(state_dir.rglob("*")) if p.is_file()] if state_dir.exists() else []


def _store_files(settings: Settings, engine: Engine) -> set[Path]:
    """The stores' own files: searched through their engines, scoped to the tenant (other tenants' rows live there)."""
    files = {settings.duckdb_path, settings.published_duckdb_path, Path(f"{settings.duckdb_path}.wal")}
    if engine.dialect.name == "sqlite" and engine.url.database:
        database = Path(engine.url.database).resolve()
        files |= {database, Path(f"{database}-wal"), Path(f"{database}-shm"), Path(f"{database}-journal")}
    return {f.resolve() for f in files}


def scan(engine: Engine, settings: Settings, tenant_id: str, matcher: Matcher) -> dict[str, int]:
    """Where the subject's identifiers still occur: every table of every store, and the state directory's files."""
    remaining: dict[str, int] = {}
    with transaction(session_factory(engine)) as session:
        for table in Base.metadata.sorted_tables:
            if not _text_columns(table):
                continue
            count = session.scalar(select(func.count()).select_from(table).where(_matching(table, tenant_id, matcher)))
            if count:
                remaining[f"ops:{table.name}"] = count
    for path in (settings.duckdb_path, settings.published_duckdb_path):
        if not path.exists():
            continue
        try:
            with duckdb.connect(str(path), read_only=True) as con:
                for (schema, table), (columns, has_tenant) in _duckdb_tables(con).items():
                    where = _duckdb_where(columns, has_tenant)
                    params = _duckdb_params(matcher, tenant_id, has_tenant)
                    query = f'SELECT count(*) FROM "{schema}"."{table}" WHERE {where}'
                    count = con.execute(query, params).fetchone()[0]
                    if count:
                        remaining[f"warehouse:{path.name}:{schema}.{table}"] = count
        except duckdb.Error:
            remaining[f"warehouse:{path.name}"] = UNSEARCHABLE  # in use elsewhere: not proven clean
    stores = _store_files(settings, engine)
    for path in _state_files(settings.state_dir):
        if path.resolve() not in stores and matcher.found_in_bytes(path.read_bytes()):
            remaining[f"file:{path}"] = 1
    return remaining
