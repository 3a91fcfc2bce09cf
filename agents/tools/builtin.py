"""The seven built-in tools as objects; the `agentprovision.tools` entry points name these."""

from __future__ import annotations

from agents.tools.base import Tool
from agents.tools.inspection import ConfigInspect, RepoInspect
from agents.tools.integrations import FetchPage, OpenTicket, PostMessage
from agents.tools.knowledge import KbSearch
from agents.tools.warehouse import WarehouseQuery

WAREHOUSE_QUERY = WarehouseQuery()
KB_SEARCH = KbSearch()
REPO_INSPECT = RepoInspect()
CONFIG_INSPECT = ConfigInspect()
OPEN_TICKET = OpenTicket()
POST_MESSAGE = PostMessage()
FETCH_PAGE = FetchPage()

BUILTIN_TOOLS: dict[str, Tool] = {
    tool.name: tool
    for tool in (WAREHOUSE_QUERY, KB_SEARCH, REPO_INSPECT, CONFIG_INSPECT, OPEN_TICKET, POST_MESSAGE, FETCH_PAGE)
}
