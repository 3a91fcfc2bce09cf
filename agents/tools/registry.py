"""Every tool the runtime can hand an agent: the built-ins plus plug-ins from entry points.

Plug-ins register under the entry-point group `agentprovision.tools` (the built-ins do too, so
config validation sees one list). A plug-in that fails to import or does not look like a tool is
reported with its entry point and the reason, and only when something asks for it: one broken
plug-in must not stop agents that never use it.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points

from agentprovision.plugins import TOOLS_GROUP
from agents.tools.base import Tool
from agents.tools.builtin import BUILTIN_TOOLS


class ToolPluginError(RuntimeError):
    """A registered tool plug-in cannot be used; the message names the entry point and the fix."""


def load_tools(names: Iterable[str] | None = None) -> dict[str, Tool]:
    """Tools by name: all of them, or only `names` (unknown names raise ToolPluginError)."""
    wanted = None if names is None else set(names)
    tools: dict[str, Tool] = {name: tool for name, tool in BUILTIN_TOOLS.items() if wanted is None or name in wanted}
    for ep in entry_points(group=TOOLS_GROUP):
        # Built-ins are registered too (for config validation); the in-process objects win.
        if ep.name in BUILTIN_TOOLS or (wanted is not None and ep.name not in wanted):
            continue
        tools[ep.name] = _load(ep)
    if wanted is not None:
        missing = sorted(wanted - set(tools))
        if missing:
            installed = ", ".join(sorted(tools)) or "none"
            raise ToolPluginError(f"no tool named {', '.join(missing)} is installed; installed tools: {installed}")
    return tools


def _load(ep: EntryPoint) -> Tool:
    where = f"tool plug-in {ep.name!r} ({ep.value}, entry point group {TOOLS_GROUP})"
    try:
        loaded = ep.load()
    except Exception as exc:
        raise ToolPluginError(f"{where} failed to import: {type(exc).__name__}: {exc}") from exc
    tool = loaded() if isinstance(loaded, type) else loaded
    problems = []
    for attribute, kind in (("name", str), ("description", str), ("read_only", bool), ("needs_approval", bool)):
        if not isinstance(getattr(tool, attribute, None), kind):
            problems.append(f"{attribute} must be a {kind.__name__}")
    if not isinstance(getattr(tool, "parameters", None), dict):
        problems.append("parameters must be a JSON schema (a dict)")
    if not callable(getattr(tool, "run", None)):
        problems.append("run(ctx, arguments) is missing")
    if not problems and tool.name != ep.name:
        problems.append(f"its name is {tool.name!r} but it is registered as {ep.name!r}")
    if problems:
        raise ToolPluginError(f"{where} is not a usable tool: {'; '.join(problems)}")
    return tool
