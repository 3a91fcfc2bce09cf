"""Reading YAML while remembering where every value came from.

Admins fix config by line number, so each value's position is kept beside the parsed data, keyed
by its path (a tuple of mapping keys and list indexes). Duplicate keys, which plain YAML loaders
silently collapse, are reported as errors here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class ConfigIssue:
    """One thing wrong with the config, located precisely enough to fix without searching."""

    file: str
    line: int
    column: int
    path: str
    message: str

    def render(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


@dataclass
class SourceFile:
    """A parsed YAML file plus the line and column of every key and value in it."""

    path: Path
    display_name: str
    data: Any
    positions: dict[Path_, tuple[int, int]] = field(default_factory=dict)

    def position(self, path: Path_) -> tuple[int, int]:
        """Closest known position: the value itself, else its nearest parent."""
        for end in range(len(path), -1, -1):
            if path[:end] in self.positions:
                return self.positions[path[:end]]
        return (1, 1)

    def issue(self, path: Path_, message: str) -> ConfigIssue:
        line, column = self.position(path)
        return ConfigIssue(self.display_name, line, column, format_path(path), message)


def format_path(path: Path_) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


class _Loader(yaml.SafeLoader):
    """SafeLoader: no arbitrary Python objects from admin-supplied files."""


def load_source(path: Path, display_name: str) -> tuple[SourceFile | None, list[ConfigIssue]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [ConfigIssue(display_name, 1, 1, "", f"cannot read the file: {exc}")]
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or exc.context or "malformed YAML"
        return None, [ConfigIssue(display_name, line, column, "", f"malformed YAML: {problem}")]
    except yaml.YAMLError as exc:
        return None, [ConfigIssue(display_name, 1, 1, "", f"malformed YAML: {exc}")]
    source = SourceFile(path=path, display_name=display_name, data=None)
    issues: list[ConfigIssue] = []
    if node is None:
        source.data = {}
        return source, issues
    source.data = _build(node, (), source, issues, _Loader(""))
    return source, issues


def _build(node: yaml.Node, path: Path_, source: SourceFile, issues: list[ConfigIssue], scalars: _Loader) -> Any:
    source.positions.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                issues.append(
                    _at(source, key_node, path, "YAML merge keys (<<) are not supported; write the fields out")
                )
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                issues.append(_at(source, key_node, path, "mapping keys must be plain words"))
                continue
            key = key_node.value
            child = (*path, key)
            if key in result:
                first_line = source.positions[child][0]
                issues.append(
                    _at(source, key_node, child, f"duplicate key {key!r} (first defined on line {first_line})")
                )
                continue
            source.positions[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            result[key] = _build(value_node, child, source, issues, scalars)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*path, index), source, issues, scalars) for index, item in enumerate(node.value)]
    return scalars.construct_object(node)


def _at(source: SourceFile, node: yaml.Node, path: Path_, message: str) -> ConfigIssue:
    return ConfigIssue(
        source.display_name, node.start_mark.line + 1, node.start_mark.column + 1, format_path(path), message
    )
