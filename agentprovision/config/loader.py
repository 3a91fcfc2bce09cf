"""Load a config directory into an `AdminConfig`, or into the complete list of what is wrong.

Layout of a config directory:
    platform.yaml        platform settings, platform-level users and alert channels
    models.yaml          the model catalogue (LiteLLM `model_list` shape plus our metadata)
    tenants/<id>.yaml    one file per tenant: the tenant, its users, agents, connectors, alerts
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from agentprovision.config.checks import CrossChecks, check_inline_secrets
from agentprovision.config.schema import AdminConfig, ModelsFile, PlatformFile, TenantFile
from agentprovision.config.source import ConfigIssue, SourceFile, load_source

PLATFORM_FILE = "platform.yaml"
MODELS_FILE = "models.yaml"
TENANTS_DIR = "tenants"


@dataclass
class LoadResult:
    config: AdminConfig | None
    issues: list[ConfigIssue] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.config is not None and not self.issues


def load_config_dir(directory: Path | str) -> LoadResult:
    directory = Path(directory)
    if not directory.exists():
        return _fail(str(directory), f"config directory {directory} does not exist")
    if not directory.is_dir():
        return _fail(str(directory), f"{directory} is a file; pass the directory holding platform.yaml")
    try:
        tenant_paths = sorted((directory / TENANTS_DIR).glob("*.yaml")) + sorted(
            (directory / TENANTS_DIR).glob("*.yml")
        )
        names = {p.name for p in directory.iterdir()}
    except OSError as exc:
        return _fail(str(directory), f"cannot read the config directory: {exc.strerror or exc}")

    issues: list[ConfigIssue] = []
    for required in (PLATFORM_FILE, MODELS_FILE):
        if required not in names:
            issues.append(ConfigIssue(str(directory / required), 1, 1, "", "required file is missing"))
    if not tenant_paths:
        issues.append(ConfigIssue(str(directory / TENANTS_DIR), 1, 1, "", "no tenant files found (tenants/<id>.yaml)"))
    if issues:
        return LoadResult(None, issues)

    platform, models = directory / PLATFORM_FILE, directory / MODELS_FILE
    platform_source, platform_file = _parse(platform, _display(platform), PlatformFile, issues)
    models_source, models_file = _parse(models, _display(models), ModelsFile, issues)
    tenant_sources, tenant_files = [], []
    for path in tenant_paths:
        source, parsed = _parse(path, _display(path), TenantFile, issues)
        tenant_sources.append(source)
        tenant_files.append(parsed)

    if platform_file is None or models_file is None:
        return LoadResult(None, issues)
    # Cross-file checks still run over the tenant files that parsed, so one pass shows everything.
    parsed = [(f, s) for f, s in zip(tenant_files, tenant_sources, strict=True) if f is not None]
    config = AdminConfig(platform=platform_file, models=models_file, tenants=[f for f, _ in parsed])
    checks = CrossChecks(
        config,
        platform_source,
        models_source,
        [s for _, s in parsed],
        every_tenant_parsed=len(parsed) == len(tenant_files),
    )
    issues.extend(checks.run())
    return LoadResult(None if issues else config, issues)


def _display(path: Path) -> str:
    """Paths in messages as the admin typed them, relative to where they ran the command."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _fail(file: str, message: str) -> LoadResult:
    return LoadResult(None, [ConfigIssue(file, 1, 1, "", message)])


def _parse(path: Path, display: str, model: type[BaseModel], issues: list[ConfigIssue]) -> tuple[Any, Any]:
    source, read_issues = load_source(path, display)
    issues.extend(read_issues)
    if source is None:
        return None, None
    issues.extend(check_inline_secrets(source))
    if not isinstance(source.data, dict):
        issues.append(source.issue((), "the file must be a mapping of sections (for example `tenant:` and `agents:`)"))
        return source, None
    try:
        return source, model.model_validate(source.data)
    except ValidationError as exc:
        issues.extend(_translate(exc, source))
        return source, None


def _translate(error: ValidationError, source: SourceFile) -> list[ConfigIssue]:
    issues = []
    for detail in error.errors(include_url=False):
        # Pydantic appends the validator name for constrained and custom types; drop anything that
        # is not a real key or index of the data.
        loc = _data_path(source.data, detail["loc"])
        issues.append(source.issue(loc, _plain_words(detail)))
    return issues


def _data_path(data: Any, loc: tuple) -> tuple:
    path: list = []
    node = data
    for index, part in enumerate(loc):
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and part < len(node)
        if in_dict or in_list:
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str) and index == len(loc) - 1:
            path.append(part)  # a missing or unknown key: still name it
            break
        else:
            continue
        path.append(part)
    return tuple(path)


def _plain_words(detail: dict) -> str:
    kind, message = detail["type"], detail["msg"]
    if kind == "missing":
        return "this field is required but missing"
    if kind == "extra_forbidden":
        return "unknown field; check the spelling against docs/configuration.md"
    if kind == "string_pattern_mismatch":
        return f"{detail['input']!r} has the wrong form (expected to match {detail['ctx']['pattern']})"
    return message.removeprefix("Value error, ")


def config_fingerprint(config: AdminConfig) -> str:
    """A stable hash of the config's meaning (not its formatting), to tell if anything changed."""
    canonical = json.dumps(config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
