"""The agent runtime: claims queued tasks, runs the tool-calling loop through the gateway, checkpoints every step.

    from agents.runtime import execute_tasks, execute_tasks_sync, TaskOutcome, transcript

See docs/agents.md for the run lifecycle, approvals, recovery and failure classes.
"""

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agents.runtime.executor import TaskOutcome, execute_tasks, execute_tasks_sync
    from agents.runtime.records import transcript
    from agents.runtime.tooling import current_tool_call_id

# Loaded on first use: the executor imports the gateway and LiteLLM (~3 s), which a command that only
# reads approvals or transcripts has no need of.
_EXPORTED_FROM = {
    "TaskOutcome": "agents.runtime.executor",
    "execute_tasks": "agents.runtime.executor",
    "execute_tasks_sync": "agents.runtime.executor",
    "transcript": "agents.runtime.records",
    "current_tool_call_id": "agents.runtime.tooling",
}


def __getattr__(name: str) -> object:
    module = _EXPORTED_FROM.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = ["TaskOutcome", "current_tool_call_id", "execute_tasks", "execute_tasks_sync", "transcript"]
