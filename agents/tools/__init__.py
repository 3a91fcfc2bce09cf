"""The tool system: what agents can do, each call confined to its tenant and run.

from agents.tools import ToolContext, ToolResult, ToolError, Tool, load_tools
"""

from agents.tools.base import MAX_CONTENT_CHARS, Tool, ToolContext, ToolError, ToolResult
from agents.tools.registry import ToolPluginError, load_tools

__all__ = ["MAX_CONTENT_CHARS", "Tool", "ToolContext", "ToolError", "ToolPluginError", "ToolResult", "load_tools"]
