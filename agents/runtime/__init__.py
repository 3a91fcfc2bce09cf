"""The agent runtime: claims queued tasks, runs the tool-calling loop through the gateway, checkpoints every step.

    from agents.runtime import execute_tasks, execute_tasks_sync, TaskOutcome, transcript

See docs/agents.md for the run lifecycle, approvals, recovery and failure classes.
"""

from agents.runtime.executor import TaskOutcome, execute_tasks, execute_tasks_sync
from agents.runtime.records import transcript
from agents.runtime.tooling import current_tool_call_id

__all__ = ["TaskOutcome", "current_tool_call_id", "execute_tasks", "execute_tasks_sync", "transcript"]
