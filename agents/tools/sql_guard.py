"""The SQL guard the warehouse_query tool uses: the kernel's one implementation, re-exported.

Scoping lives in `agentprovision.sql_guard` so dashboards, CLI reports and agents share a single
set of rules (see its docstring); this module keeps the tools' import path and adds nothing.
tests/test_sql_guard.py exercises it with hostile input and proves the scoping on DuckDB.
"""

from __future__ import annotations

from agentprovision.sql_guard import MARTS_SCHEMA, TENANT_COLUMN, SqlRefused, parse_single_select, scope_select

__all__ = ["MARTS_SCHEMA", "TENANT_COLUMN", "SqlRefused", "parse_single_select", "scope_select"]
