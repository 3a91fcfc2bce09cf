"""The built-in agent types and tools, as plain data.

Both are published through Python entry points (see pyproject.toml), the same way a plug-in
package adds its own, so config validation and the runtime find built-ins and plug-ins alike
without the core knowing either by name.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    read_only: bool
    needs_approval: bool = False


@dataclass(frozen=True)
class AgentTypeSpec:
    name: str
    title: str
    description: str
    default_tools: tuple[str, ...]
    default_tier: str


WAREHOUSE_QUERY = ToolSpec("warehouse_query", "Read-only SQL (one SELECT) over the tenant's own warehouse data.", True)
KB_SEARCH = ToolSpec("kb_search", "Full-text search over the tenant's knowledge base.", True)
REPO_INSPECT = ToolSpec("repo_inspect", "List and read files in the run's working copy of a repository.", True)
CONFIG_INSPECT = ToolSpec("config_inspect", "Read and lint infrastructure and application config files.", True)
OPEN_TICKET = ToolSpec("open_ticket", "Open a ticket through a configured integration.", False, needs_approval=True)
POST_MESSAGE = ToolSpec("post_message", "Post a message to a configured chat channel.", False, needs_approval=True)
FETCH_PAGE = ToolSpec("fetch_page", "Fetch a page from a host an integration allows.", True)

FULL_STACK_DEVELOPMENT = AgentTypeSpec(
    "full_stack_development",
    "Full-stack development",
    "Reviews and explains application code, proposes changes across front end and back end.",
    ("repo_inspect", "kb_search", "open_ticket"),
    "advanced",
)
DEVOPS_INFRASTRUCTURE = AgentTypeSpec(
    "devops_infrastructure",
    "DevOps & infrastructure",
    "Inspects deployment and infrastructure config, diagnoses pipeline and runtime failures.",
    ("config_inspect", "repo_inspect", "open_ticket"),
    "standard",
)
QA_TESTING = AgentTypeSpec(
    "qa_testing",
    "QA & testing",
    "Triages defects, writes test plans and reproduces reported issues.",
    ("kb_search", "repo_inspect", "open_ticket"),
    "standard",
)
DATA_ANALYSIS = AgentTypeSpec(
    "data_analysis",
    "Data analysis & science",
    "Answers analytical questions with SQL over the tenant's warehouse and explains the results.",
    ("warehouse_query", "kb_search"),
    "advanced",
)
BUSINESS_INTELLIGENCE = AgentTypeSpec(
    "business_intelligence",
    "Business intelligence",
    "Builds recurring KPI summaries and reports from the tenant's marts.",
    ("warehouse_query", "post_message"),
    "standard",
)
SECURITY_COMPLIANCE = AgentTypeSpec(
    "security_compliance",
    "Security & compliance",
    "Reviews config and code for security issues and maps findings to controls.",
    ("config_inspect", "repo_inspect", "kb_search"),
    "advanced",
)
DOCUMENTATION = AgentTypeSpec(
    "documentation",
    "Documentation & technical writing",
    "Drafts and updates technical documentation from code and the knowledge base.",
    ("kb_search", "repo_inspect", "fetch_page"),
    "basic",
)
