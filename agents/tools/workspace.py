"""Read-only access to a run's working directory: confined paths, listing, reading and search.

Paths come from the model, so each one is resolved (symlinks and `..` included) before it is
checked against the working directory, the same rule the connectors apply to a tenant's file
area (`connectors.sdk.ConnectorContext.path`). Absolute paths are refused outright. Listings
and searches never follow a link out of the directory, and every read is capped in size.

`prepare_workdir` makes the per-run copy: a folder of the tenant's file area (by default
`tenant_files/<tenant>/repo` under the config directory) copied to the state directory, so a run
inspects a snapshot that nothing else changes under it and that it cannot change for others.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from agentprovision.settings import Settings
from agents.tools.base import ToolError
from connectors.errors import SettingsError
from connectors.sdk import TENANT_FILES_DIR, ConnectorContext

MAX_READ_BYTES = 64_000
MAX_FILE_BYTES = 2_000_000  # larger files are not searched or linted
MAX_ENTRIES = 500
MAX_MATCHES = 200
MAX_LINE_CHARS = 500
SEARCH_SECONDS = 5.0
SKIPPED_DIRS = frozenset({".git", "node_modules", ".venv", "__pycache__", ".mypy_cache", ".ruff_cache"})
DEFAULT_SOURCE = "repo"


def confine(root: Path, value: str) -> Path:
    """`value` (relative to root) resolved inside `root`; ToolError(policy) for anything outside."""
    if not isinstance(value, str) or "\x00" in value:
        raise ToolError("the path is not valid text", error_class="policy")
    text = value.strip() or "."
    if text.startswith(("/", "\\", "~")) or re.match(r"^[A-Za-z]:", text):
        raise ToolError(f"path {value!r} is absolute; give a path relative to the working directory", "policy")
    base = root.resolve()
    path = (base / text).resolve()
    if not path.is_relative_to(base):
        raise ToolError(f"path {value!r} leads outside the working directory", error_class="policy")
    return path


def relative(root: Path, path: Path) -> str:
    return PurePosixPath(path.relative_to(root.resolve())).as_posix() or "."


def walk(root: Path, start: Path) -> Iterator[Path]:
    """Files under `start`, sorted, never through a symlink that leaves `root` or into skipped dirs."""
    base = root.resolve()
    for directory, dirs, files in os.walk(start, followlinks=False):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
        for name in sorted(files):
            path = Path(directory) / name
            resolved = path.resolve()
            if resolved.is_relative_to(base) and resolved.is_file():
                yield path


def list_entries(root: Path, value: str, pattern: str | None = None) -> dict:
    start = confine(root, value)
    if not start.exists():
        raise ToolError(f"{value!r} does not exist in the working directory")
    if start.is_file():
        return {"path": relative(root, start), "entries": [_entry(root, start)], "truncated": False}
    entries, truncated = [], False
    for path in walk(root, start):
        rel = relative(root, path)
        if pattern and not (fnmatch.fnmatch(rel, pattern) or fnmatch.fnmatch(path.name, pattern)):
            continue
        if len(entries) >= MAX_ENTRIES:
            truncated = True
            break
        entries.append(_entry(root, path))
    return {"path": relative(root, start), "entries": entries, "truncated": truncated}


def _entry(root: Path, path: Path) -> dict:
    return {"path": relative(root, path), "bytes": path.stat().st_size}


def read_text(root: Path, value: str, start_line: int = 1, max_lines: int = 400) -> dict:
    path = confine(root, value)
    if not path.is_file():
        raise ToolError(f"{value!r} is not a file in the working directory")
    with path.open("rb") as handle:
        head = handle.read(MAX_READ_BYTES * 4)
    if b"\x00" in head[:8192]:
        return {"path": relative(root, path), "binary": True, "bytes": path.stat().st_size}
    lines = head.decode("utf-8", errors="replace").splitlines()
    first = max(1, start_line)
    chosen, size = [], 0
    for line in lines[first - 1 :]:
        if len(chosen) >= max_lines or size + len(line) > MAX_READ_BYTES:
            break
        chosen.append(line)
        size += len(line) + 1
    last = first + len(chosen) - 1
    return {
        "path": relative(root, path),
        "start_line": first,
        "end_line": last,
        "more": last < len(lines) or path.stat().st_size > len(head),
        "text": "\n".join(chosen),
    }


def search(root: Path, value: str, needle: str, *, regex: bool = False, ignore_case: bool = True) -> dict:
    start = confine(root, value)
    flags = re.IGNORECASE if ignore_case else 0
    try:
        matcher = re.compile(needle if regex else re.escape(needle), flags)
    except re.error as exc:
        raise ToolError(f"the pattern is not a valid regular expression: {exc}") from None
    files = [start] if start.is_file() else list(walk(root, start))
    deadline = time.monotonic() + SEARCH_SECONDS
    matches, stopped = [], None
    for path in files:
        if len(matches) >= MAX_MATCHES:
            stopped = f"stopped at {MAX_MATCHES} matches"
            break
        if time.monotonic() > deadline:
            stopped = f"stopped after {SEARCH_SECONDS:g}s"
            break
        if path.stat().st_size > MAX_FILE_BYTES:
            continue
        data = path.read_bytes()
        if b"\x00" in data[:8192]:
            continue
        for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), start=1):
            if matcher.search(line[:MAX_LINE_CHARS]):
                matches.append({"path": relative(root, path), "line": number, "text": line[:MAX_LINE_CHARS]})
                if len(matches) >= MAX_MATCHES:
                    break
    return {"pattern": needle, "matches": matches, "stopped": stopped}


def prepare_workdir(settings: Settings, tenant_id: str, run_id: str, source: str | None = None) -> Path:
    """A fresh per-run copy of a folder of the tenant's file area; returns its path.

    `source` is relative to the config directory's tenant area (`tenant_files/<tenant>/`), default
    `repo`; the same confinement as file-based integrations applies. A missing source gives an
    empty working directory, so tools say "nothing here" rather than failing the run.
    """
    area = ConnectorContext(tenant_id=tenant_id, integration_id="workdir", base_dir=settings.config_dir.resolve())
    try:
        origin = area.path(f"{TENANT_FILES_DIR}/{tenant_id}/{source or DEFAULT_SOURCE}")
    except SettingsError as exc:
        raise ToolError(str(exc), error_class="policy") from None
    target = settings.state_dir / "runs" / tenant_id / run_id / "work"
    if target.exists():
        return target  # a resumed run keeps the copy it started with
    target.parent.mkdir(parents=True, exist_ok=True)
    if origin.is_dir():
        # Links are copied as links; the tools refuse to follow any that point out of the copy.
        shutil.copytree(origin, target, symlinks=True, ignore=shutil.ignore_patterns(*SKIPPED_DIRS))
    else:
        target.mkdir()
    return target
