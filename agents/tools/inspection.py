"""repo_inspect and config_inspect: read-only looks inside the run's working directory."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from agents.tools import config_lint, workspace
from agents.tools.base import Arguments, BuiltinTool, ToolContext, ToolError, ToolResult

PathArg = Field(default=".", max_length=1000, description="Path relative to the working directory.")


class RepoArgs(Arguments):
    action: Literal["list", "read", "search"] = Field(description="list files, read one file, or search text.")
    path: str = PathArg
    pattern: str | None = Field(
        default=None, max_length=200, description="list: a glob such as *.py; search: the text to find."
    )
    regex: bool = Field(default=False, description="search: treat pattern as a regular expression.")
    start_line: int = Field(default=1, ge=1, description="read: first line to return.")
    max_lines: int = Field(default=400, ge=1, le=2000, description="read: most lines to return.")

    @model_validator(mode="after")
    def search_needs_pattern(self) -> RepoArgs:
        if self.action == "search" and not self.pattern:
            raise ValueError("search needs a pattern (the text to find)")
        return self


class RepoInspect(BuiltinTool):
    name = "repo_inspect"
    description = (
        "Read-only look at the run's working copy of the repository: list files (optionally by glob), read a "
        "file by lines, or search text across files. Paths are relative to the working directory."
    )
    read_only = True
    Args = RepoArgs

    def call(self, ctx: ToolContext, args: RepoArgs) -> ToolResult:
        root = _root(ctx)
        if args.action == "list":
            return ToolResult.of(workspace.list_entries(root, args.path, args.pattern))
        if args.action == "read":
            return ToolResult.of(workspace.read_text(root, args.path, args.start_line, args.max_lines))
        return ToolResult.of(workspace.search(root, args.path, args.pattern or "", regex=args.regex))


class ConfigArgs(Arguments):
    action: Literal["list", "read", "lint"] = Field(
        description="list config files, read one, or lint a file or every config file under a path."
    )
    path: str = PathArg
    start_line: int = Field(default=1, ge=1, description="read: first line to return.")
    max_lines: int = Field(default=400, ge=1, le=2000, description="read: most lines to return.")


class ConfigInspect(BuiltinTool):
    name = "config_inspect"
    description = (
        "Read and lint infrastructure and application config in the run's working directory (YAML, JSON, TOML, "
        ".env, Dockerfile): plain-text secrets, :latest or untagged images, privileged containers, host "
        "namespaces and paths, root users. Findings name the file and line, never the secret."
    )
    read_only = True
    Args = ConfigArgs

    def call(self, ctx: ToolContext, args: ConfigArgs) -> ToolResult:
        root = _root(ctx)
        if args.action == "read":
            return ToolResult.of(workspace.read_text(root, args.path, args.start_line, args.max_lines))
        start = workspace.confine(root, args.path)
        if not start.exists():
            raise ToolError(f"{args.path!r} does not exist in the working directory")
        files = [start] if start.is_file() else list(workspace.walk(root, start))
        configs = [(p, kind) for p in files if (kind := config_lint.kind_of(p))]
        if args.action == "list":
            listed = [{"path": workspace.relative(root, p), "kind": kind} for p, kind in configs]
            return ToolResult.of({"files": listed[: workspace.MAX_ENTRIES]})
        if start.is_file() and not configs:
            raise ToolError(
                f"{args.path!r} is not a config file this tool can lint (YAML, JSON, TOML, .env, Dockerfile)"
            )
        findings, skipped = [], []
        for path, kind in configs[: workspace.MAX_ENTRIES]:
            display = workspace.relative(root, path)
            if path.stat().st_size > workspace.MAX_FILE_BYTES:
                skipped.append(display)
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
            findings.extend(f.as_dict() for f in config_lint.lint_text(display, kind, text))
        by_severity = {s: sum(1 for f in findings if f["severity"] == s) for s in ("high", "medium", "low")}
        return ToolResult.of(
            {
                "files_checked": len(configs) - len(skipped),
                "summary": by_severity,
                "findings": findings,
                "skipped": skipped,
            }
        )


def _root(ctx: ToolContext):  # type: ignore[no-untyped-def]
    root = ctx.workdir
    if root is None or not root.is_dir():
        raise ToolError("this run has no working directory to inspect")
    return root
