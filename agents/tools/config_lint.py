"""Lint infrastructure and application config with real parsers, and report findings.

YAML (Kubernetes manifests, compose files, CI pipelines), JSON, TOML, .env files and
Dockerfiles are each parsed by a proper parser (PyYAML's composer keeps line numbers; json and
tomllib for the others; Dockerfiles by instruction, joining continuation lines), then checked:
- a secret written in plain text: a key that names a credential holding a literal value, or
  text the gateway's guardrails recognise as an API key or private key;
- a container image on `:latest` or with no tag at all;
- containers that run privileged, share the host's network/PID namespaces, mount host paths,
  allow privilege escalation, run as root or add broad capabilities;
- Dockerfiles that never switch away from root, fetch with ADD from a URL, or pipe a download
  into a shell.
A finding never repeats the secret it found: only where it is and what kind it is.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from agents.gateway import guardrails

SECRET_KEY = re.compile(
    r"(pass(word|wd)?|secret|token|api[_-]?key|apikey|private[_-]?key|access[_-]?key|client[_-]?secret|credential"
    r"|auth[_-]?key|signing[_-]?key|dsn|connection[_-]?string)$",
    re.IGNORECASE,
)
# Values that are references or placeholders, not secrets.
REFERENCE = re.compile(
    r"^(\$\{?[A-Za-z_][A-Za-z0-9_]*\}?|secret://.+|\{\{.*\}\}|<[^>]+>|\*+|x+|changeme|example|dummy|none|null|)$",
    re.IGNORECASE,
)
DANGEROUS_CAPABILITIES = frozenset({"ALL", "SYS_ADMIN", "NET_ADMIN", "SYS_PTRACE", "SYS_MODULE", "DAC_READ_SEARCH"})
CONFIG_SUFFIXES = {".yaml": "yaml", ".yml": "yaml", ".json": "json", ".toml": "toml", ".env": "env"}


@dataclass(frozen=True)
class Finding:
    path: str
    line: int | None
    rule: str
    severity: str  # high | medium | low
    message: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def kind_of(path: Path) -> str | None:
    name = path.name.lower()
    if name == "dockerfile" or name.startswith("dockerfile.") or name.endswith(".dockerfile"):
        return "dockerfile"
    if name == ".env" or name.startswith(".env."):
        return "env"
    return CONFIG_SUFFIXES.get(path.suffix.lower())


def lint_text(display: str, kind: str, text: str) -> list[Finding]:
    """Findings for one file's text; a file that does not parse is itself a finding."""
    linter = {"yaml": _lint_yaml, "json": _lint_json, "toml": _lint_toml, "env": _lint_env, "dockerfile": _lint_docker}
    findings = list(linter[kind](display, text))
    findings.extend(
        _guardrail_secrets(display, text, already={f.line for f in findings if f.rule == "plaintext-secret"})
    )
    return sorted(findings, key=lambda f: (f.line or 0, f.rule))


# --- structured files: one walk over (key path, value, line) -----------------------------------


def _lint_yaml(display: str, text: str) -> Iterator[Finding]:
    try:
        documents = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        yield Finding(display, line, "parse-error", "medium", f"not valid YAML: {getattr(exc, 'problem', exc)}")
        return
    for document in documents:
        if document is not None:
            yield from _check_pairs(display, _yaml_pairs(document, ()))


def _yaml_pairs(node: yaml.Node, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any, int]]:
    if isinstance(node, yaml.MappingNode):
        scalars = {str(k.value): v for k, v in node.value if isinstance(v, yaml.ScalarNode)}
        if "name" in scalars and "value" in scalars:
            # Kubernetes-style env entries ({name: DB_PASSWORD, value: ...}): the name says what the value is.
            yield (*path, str(scalars["name"].value)), _scalar(scalars["value"]), scalars["value"].start_mark.line + 1
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if isinstance(value_node, yaml.ScalarNode):
                yield (*path, key), _scalar(value_node), value_node.start_mark.line + 1
            else:
                yield (*path, key), _Container(), key_node.start_mark.line + 1
                yield from _yaml_pairs(value_node, (*path, key))
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            if isinstance(item, yaml.ScalarNode):
                yield (*path, "[]"), _scalar(item), item.start_mark.line + 1
            else:
                yield from _yaml_pairs(item, (*path, "[]"))


class _Container:
    """Marks a key whose value is a mapping or list (only scalars are checked as values)."""


def _scalar(node: yaml.ScalarNode) -> Any:
    if node.style is None:  # plain scalars follow YAML's typing: true, 0, null
        try:
            return yaml.safe_load(node.value)
        except yaml.YAMLError:
            return node.value
    return node.value


def _lint_json(display: str, text: str) -> Iterator[Finding]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        yield Finding(display, exc.lineno, "parse-error", "medium", f"not valid JSON: {exc.msg}")
        return
    yield from _check_pairs(display, _data_pairs(data, (), text))


def _lint_toml(display: str, text: str) -> Iterator[Finding]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        yield Finding(display, getattr(exc, "lineno", None), "parse-error", "medium", f"not valid TOML: {exc}")
        return
    yield from _check_pairs(display, _data_pairs(data, (), text))


def _data_pairs(data: Any, path: tuple[str, ...], text: str) -> Iterator[tuple[tuple[str, ...], Any, int | None]]:
    """Pairs of parsed JSON/TOML; these parsers keep no positions, so a key's line is where it first appears."""
    if isinstance(data, dict):
        if isinstance(data.get("name"), str) and isinstance(data.get("value"), str):
            yield (*path, data["name"]), data["value"], _line_of(text, data["name"])
        for key, value in data.items():
            line = _line_of(text, str(key))
            if isinstance(value, dict | list):
                yield (*path, str(key)), _Container(), line
                yield from _data_pairs(value, (*path, str(key)), text)
            else:
                yield (*path, str(key)), value, line
    elif isinstance(data, list):
        for item in data:
            if isinstance(item, dict | list):
                yield from _data_pairs(item, (*path, "[]"), text)
            else:
                yield (*path, "[]"), item, None


def _line_of(text: str, key: str) -> int | None:
    match = re.search(rf"^.*\b{re.escape(key)}\b", text, re.M)
    return text.count("\n", 0, match.start()) + 1 if match else None


def _check_pairs(display: str, pairs: Iterator[tuple[tuple[str, ...], Any, int | None]]) -> Iterator[Finding]:
    for path, value, line in pairs:
        key = path[-1]
        parent = path[-2] if len(path) > 1 else ""
        if isinstance(value, _Container):
            if key == "hostPath":
                yield Finding(display, line, "host-path", "medium", "a volume mounts a path of the host")
            continue
        lowered = str(value).strip().lower() if value is not None else ""
        if isinstance(value, str) and SECRET_KEY.search(key) and not REFERENCE.match(value.strip()):
            yield Finding(
                display, line, "plaintext-secret", "high", f"{key} holds a literal value; reference a secret instead"
            )
        if key == "image" and isinstance(value, str):
            yield from _image(display, line, value)
        if key == "privileged" and value is True:
            yield Finding(display, line, "privileged", "high", "the container runs privileged")
        if key in ("hostNetwork", "hostPID", "hostIPC") and value is True:
            yield Finding(display, line, "host-namespace", "high", f"{key}: true shares the host's namespace")
        if key == "network_mode" and lowered == "host":
            yield Finding(display, line, "host-namespace", "high", "network_mode: host shares the host's network")
        if key == "allowPrivilegeEscalation" and value is True:
            yield Finding(display, line, "privilege-escalation", "medium", "allowPrivilegeEscalation is true")
        if key == "runAsNonRoot" and value is False:
            yield Finding(display, line, "runs-as-root", "medium", "runAsNonRoot is false")
        if key == "runAsUser" and value == 0:
            yield Finding(display, line, "runs-as-root", "medium", "runAsUser is 0 (root)")
        if key == "[]" and parent in ("cap_add", "add") and str(value).upper() in DANGEROUS_CAPABILITIES:
            yield Finding(display, line, "capabilities", "high", f"adds the {str(value).upper()} capability")


def _image(display: str, line: int | None, image: str) -> Iterator[Finding]:
    reference = image.strip()
    if not reference or "${" in reference or "{{" in reference or "@sha256:" in reference:
        return
    name = reference.rsplit("/", 1)[-1]
    if name.endswith(":latest"):
        yield Finding(display, line, "latest-tag", "medium", f"image {reference} uses :latest; pin a version")
    elif ":" not in name:
        yield Finding(display, line, "latest-tag", "medium", f"image {reference} has no tag (means :latest)")


# --- line-based files --------------------------------------------------------------------------


def _lint_env(display: str, text: str) -> Iterator[Finding]:
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip().strip("'\"")
        if SECRET_KEY.search(key.strip()) and not REFERENCE.match(value):
            yield Finding(display, number, "plaintext-secret", "high", f"{key.strip()} holds a literal value")


def _docker_instructions(text: str) -> Iterator[tuple[int, str, str]]:
    """(line, INSTRUCTION, arguments), continuation lines joined, comments skipped."""
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        whole = (pending + stripped).strip()
        pending = ""
        if whole:
            instruction, _, arguments = whole.partition(" ")
            yield start, instruction.upper(), arguments.strip()
    if pending.strip():
        instruction, _, arguments = pending.strip().partition(" ")
        yield start, instruction.upper(), arguments.strip()


def _lint_docker(display: str, text: str) -> Iterator[Finding]:
    user, stages, saw_from = None, set(), False
    for line, instruction, arguments in _docker_instructions(text):
        if instruction == "FROM":
            saw_from = True
            parts = [p for p in arguments.split() if not p.startswith("--")]
            image = parts[0] if parts else ""
            if len(parts) >= 3 and parts[1].lower() == "as":
                stages.add(parts[2].lower())
            if image.lower() not in stages and image.lower() != "scratch":
                yield from _image(display, line, image)
            user = None  # each stage starts as root again
        elif instruction == "USER":
            user = arguments.split(":", 1)[0].strip()
        elif instruction in ("ENV", "ARG"):
            for key, value in _docker_pairs(arguments):
                if SECRET_KEY.search(key) and value is not None and not REFERENCE.match(value):
                    yield Finding(display, line, "plaintext-secret", "high", f"{instruction} {key} bakes a secret in")
        elif instruction == "ADD" and re.search(r"\bhttps?://", arguments):
            yield Finding(display, line, "add-url", "low", "ADD fetches a URL; use curl with a checksum instead")
        elif instruction == "RUN" and re.search(r"\b(curl|wget)\b[^|;&]*\|\s*(ba|z)?sh\b", arguments):
            yield Finding(display, line, "pipe-to-shell", "medium", "a download is piped straight into a shell")
    if saw_from and (user is None or user in ("root", "0")):
        yield Finding(display, None, "runs-as-root", "medium", "the final stage runs as root; add a USER")


def _docker_pairs(arguments: str) -> Iterator[tuple[str, str | None]]:
    if "=" not in arguments.split(" ", 1)[0]:
        key, _, value = arguments.partition(" ")  # legacy `ENV KEY value`
        yield key, value.strip().strip("'\"") or None
        return
    for token in re.findall(r"""([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|'[^']*'|\S*)""", arguments):
        yield token[0], token[1].strip("'\"")


def _guardrail_secrets(display: str, text: str, already: set[int | None]) -> Iterator[Finding]:
    """Keys and private keys the gateway's detectors recognise, wherever they sit in the file."""
    for finding in guardrails.find(text):
        if finding.kind not in guardrails.SECRET_KINDS:
            continue
        line = text.count("\n", 0, finding.start) + 1
        if line in already:
            continue
        already.add(line)
        what = "a private key" if finding.kind == "private_key" else "an API key or token"
        yield Finding(display, line, "plaintext-secret", "high", f"{what} appears in plain text")
