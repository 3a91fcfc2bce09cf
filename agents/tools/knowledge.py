"""kb_search: the best passages of the tenant's knowledge base for a query, with their sources.

The search itself is `connectors.kb.search` (BM25 over the tenant's own documents); this tool
only shapes its hits for the model, each with a source id the answer can cite.
"""

from __future__ import annotations

from pydantic import Field

from agents.tools.base import Arguments, BuiltinTool, ToolContext, ToolResult
from connectors import kb


class SearchArgs(Arguments):
    query: str = Field(min_length=1, max_length=500, description="Words to look for.")
    limit: int = Field(default=5, ge=1, le=20, description="Most passages to return.")


class KbSearch(BuiltinTool):
    name = "kb_search"
    description = (
        "Full-text search over this tenant's knowledge base (documents synced by its integrations). "
        "Returns the best-matching passages with a source id to cite."
    )
    read_only = True
    Args = SearchArgs

    def call(self, ctx: ToolContext, args: SearchArgs) -> ToolResult:
        hits = kb.search(ctx.engine, ctx.tenant_id, args.query, limit=args.limit)
        passages = [
            {
                "source_id": f"{hit.integration_id}/{hit.doc_id}",
                "title": hit.title,
                "heading": hit.heading,
                "passage": hit.snippet,
                "score": round(hit.score, 3),
            }
            for hit in hits
        ]
        return ToolResult.of({"query": args.query, "passages": passages})
