"""The one place a SELECT over the marts is checked and scoped to a tenant.

Anyone may hand SQL to the marts: our own reports, a dashboard, or an agent's `warehouse_query`
tool. `scope_select` parses the text with sqlglot, refuses anything but a single read-only SELECT
over known marts, and rewrites every reference to a mart into a subquery that filters on
`tenant_id`, so no predicate the author adds (an `OR 1=1`, a UNION, a correlated subquery) can
widen what a reference returns. Everything is decided on the syntax tree, never on the text:
comments, odd spacing, quoting and case cannot smuggle a second statement or a table past the checks.

The rules, each refused with a message the author can act on:
- exactly one statement, and it is a query (SELECT, VALUES, set operations, WITH ... SELECT);
- no writes, DDL, COPY/ATTACH/INSTALL/LOAD/PRAGMA/SET/USE or SELECT ... INTO anywhere;
- tables are marts (`name` or `marts.name`) or CTEs visible at that point; nothing else,
  so no `main.x`, `raw.events`, `information_schema`, catalogs or file paths;
- no table functions except the harmless generators (range, generate_series, unnest), and no
  scalar functions that reach files, settings, the environment or the catalog;
- no locks or time travel; no parameters unless the caller binds them (`allow_parameters`, used by
  `agentprovision.marts` for its own queries, whose values the database binds).

The guard is pure (no database needed), so it can be tested against hostile input exhaustively.
It lives in the kernel because every reader of the marts shares it: `agentprovision.marts` (the
dashboards and CLI reports) and the agents' `warehouse_query` tool. The database connection adds a
second layer underneath (read-only, no external access).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

MARTS_SCHEMA = "marts"
TENANT_COLUMN = "tenant_id"
MAX_SQL_CHARS = 20_000
MAX_NODES = 5_000
_TENANT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")

# Node types that change state or reach outside the query. The root must be a query anyway;
# refusing them anywhere in the tree is a second line in case a dialect nests one inside.
_FORBIDDEN_NODES: tuple[type[exp.Expression], ...] = tuple(
    getattr(exp, name)
    for name in (
        "Insert",
        "Update",
        "Delete",
        "Merge",
        "Create",
        "Drop",
        "Alter",
        "Copy",
        "Attach",
        "Detach",
        "Set",
        "Pragma",
        "Command",
        "Use",
        "Describe",
        "Install",
        "Transaction",
        "Commit",
        "Rollback",
        "Into",
        "Lock",
        "Summarize",
        "Show",
        "Export",
        "LoadData",
        "Analyze",
        "Cache",
        "Uncache",
        "Refresh",
        "Grant",
        "Revoke",
        "TruncateTable",
        "Comment",
    )
    if hasattr(exp, name)
)
_NODE_WORDS = {"Into": "SELECT ... INTO", "Lock": "FOR UPDATE/SHARE", "Command": "this statement"}

# Functions that read files, settings, the environment or the catalog, by name. DuckDB names
# its table functions consistently, so prefixes and suffixes catch the families (read_csv,
# read_json_auto, duckdb_settings, pragma_table_info, sqlite_scan, parquet_metadata, ...).
_FORBIDDEN_FUNCTIONS = frozenset(
    {
        "glob",
        "getenv",
        "current_setting",
        "query",
        "query_table",
        "sniff_csv",
        "which_secret",
        "load",
        "install",
        "checkpoint",
        "force_checkpoint",
        "summary",
        "summarize",
        "getvariable",
        "current_database",
        "current_catalog",
        "current_schema",
        "current_schemas",
        "current_user",
        "session_user",
        "user",
        "version",
        "has_any_column_privilege",
    }
)
_FORBIDDEN_FUNCTION_PATTERN = re.compile(
    r"^(read_|duckdb_|pragma_|parquet_|iceberg_|delta_|sqlite_|postgres_|mysql_|http|s3_|azure_|gcs_|ducklake_|"
    r"json_execute|sql_|pg_|has_.*_privilege|file_|glob)|(_scan|_metadata|_schema|_settings|_secrets?)$"
)
# Table functions that generate values and touch nothing else.
_ALLOWED_TABLE_FUNCTIONS: tuple[type[exp.Expression], ...] = (exp.GenerateSeries, exp.Unnest, exp.Explode)
# Arguments of a mart reference that move onto the scoped subquery; any other (time travel,
# CHANGES, ONLY, ...) is refused.
_MOVABLE_TABLE_ARGS = ("alias", "pivots", "sample")
_PLAIN_TABLE_ARGS = frozenset({"this", "db", "catalog", *_MOVABLE_TABLE_ARGS})


class SqlRefused(ValueError):
    """The SQL is not a single read-only SELECT over known marts; the message says what to change."""


class SqlSyntaxError(SqlRefused):
    """The SQL is not a well-formed query at all (empty, too long, does not parse), rather than one the policy
    forbids. A subclass so every existing `except SqlRefused` still catches it, while a caller that can
    retry (an agent correcting its own query) can tell a typo from a refusal."""


UnsafeQuery = SqlRefused  # the name agentprovision.marts exports


def scope_select(
    sql: str,
    tenant_id: str | None,
    marts: Mapping[str, Iterable[str]] | Iterable[str],
    *,
    catalog: str | None = None,
    dialect: str = "duckdb",
    allow_parameters: bool = False,
) -> str:
    """The same query with every mart reference replaced by a subquery over `tenant_id`'s rows.

    `marts` names the marts that may be read: a set of names, or a mapping of name to columns (then a
    mart without a tenant_id column is refused for a tenant scope, since it cannot be filtered).
    `tenant_id=None` means platform scope: the same checks, no tenant filter. `catalog` qualifies the
    rewritten references (for a warehouse attached under that name). `dialect` is sqlglot's name of the SQL
    read and written (duckdb or postgres). `allow_parameters` lets `$name` placeholders through for callers
    that bind them. Raises SqlRefused.
    """
    if tenant_id is not None and not _TENANT_ID.match(tenant_id):
        raise SqlRefused(f"{tenant_id!r} is not a tenant id")
    known = _known_marts(marts)
    tree = parse_single_select(sql, dialect)
    _check_nodes(tree, allow_parameters)
    for table in list(tree.find_all(exp.Table)):
        _check_and_rewrite_table(table, tenant_id, known, catalog)
    _strip_mart_qualifiers(tree, known)
    return tree.sql(dialect=dialect)


def parse_single_select(sql: str, dialect: str = "duckdb") -> exp.Query:
    """Exactly one query statement, parsed; SqlSyntaxError when it is not well-formed, SqlRefused otherwise."""
    if not isinstance(sql, str) or not sql.strip():
        raise SqlSyntaxError("the SQL is empty; write one SELECT statement")
    if len(sql) > MAX_SQL_CHARS:
        raise SqlSyntaxError(f"the SQL is {len(sql)} characters long; keep it under {MAX_SQL_CHARS}")
    if "\x00" in sql:
        raise SqlSyntaxError("the SQL contains a NUL character")
    # sqlglot logs a warning when it falls back to an opaque Command; the refusal below says it better.
    logger = logging.getLogger("sqlglot")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        parsed = sqlglot.parse(sql, read=dialect)
    except (ParseError, TokenError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SqlSyntaxError(f"the SQL does not parse: {first}") from None
    except RecursionError:
        raise SqlSyntaxError("the SQL is nested too deeply") from None
    finally:
        logger.setLevel(level)
    # sqlglot keeps a comment after the last `;` as a Semicolon node of its own; it is not a statement, so
    # `SELECT 1; -- note` is one query. Empty statements (`;;`) parse as None and are not statements either.
    statements = [s for s in parsed if s is not None and not isinstance(s, exp.Semicolon)]
    if not statements:
        raise SqlSyntaxError("the SQL holds no statement; write one SELECT statement")
    if len(statements) > 1:
        raise SqlRefused(f"the SQL holds {len(statements)} statements; send exactly one SELECT")
    tree = statements[0]
    if not isinstance(tree, exp.Query):
        kind = type(tree).__name__.upper()
        raise SqlRefused(f"only SELECT queries are allowed, not {kind}")
    return tree


def _known_marts(marts: Mapping[str, Iterable[str]] | Iterable[str]) -> dict[str, frozenset[str] | None]:
    if isinstance(marts, Mapping):
        return {name.lower(): frozenset(c.lower() for c in columns) for name, columns in marts.items()}
    return {name.lower(): None for name in marts}


def _check_nodes(tree: exp.Expression, allow_parameters: bool) -> None:
    for count, node in enumerate(tree.walk(), start=1):
        if count > MAX_NODES:
            raise SqlSyntaxError(f"the query is too large (over {MAX_NODES} syntax nodes); simplify it")
        if isinstance(node, _FORBIDDEN_NODES):
            name = type(node).__name__
            raise SqlRefused(f"{_NODE_WORDS.get(name, name.upper())} is not allowed; only read-only SELECT queries")
        if isinstance(node, exp.Placeholder | exp.Parameter) and not allow_parameters:
            raise SqlRefused("query parameters ($1, ?, :name) are not supported; write the values into the query")
        if isinstance(node, exp.Func):
            name = function_name(node)
            if name in _FORBIDDEN_FUNCTIONS or _FORBIDDEN_FUNCTION_PATTERN.search(name):
                raise SqlRefused(f"function {name}() is not allowed: it reaches outside the tenant's marts")


def function_name(node: exp.Func) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    return node.sql_name().lower()


def _check_and_rewrite_table(
    table: exp.Table, tenant_id: str | None, known: dict[str, frozenset[str] | None], catalog: str | None
) -> None:
    source = table.this
    if not isinstance(source, exp.Identifier):
        if isinstance(source, _ALLOWED_TABLE_FUNCTIONS) and not table.args.get("db"):
            return
        shown = function_name(source) if isinstance(source, exp.Func) else type(source).__name__.lower()
        raise SqlRefused(f"table function {shown}() is not allowed; read from the marts: {_listing(known)}")
    name = table.name.lower()
    schema = table.db.lower() if table.args.get("db") else None
    if table.args.get("catalog"):
        raise SqlRefused(f"{table.sql(dialect='duckdb')}: other databases are not reachable; use marts.<name>")
    extra = sorted(k for k, v in table.args.items() if v and k not in _PLAIN_TABLE_ARGS)
    if schema is None and _is_cte_reference(table, name):
        if extra:
            raise SqlRefused(f"{name}: {', '.join(extra)} is not supported here")
        return
    if schema not in (None, MARTS_SCHEMA):
        raise SqlRefused(f"schema {table.db!r} is not readable; only marts are: {_listing(known)}")
    if name not in known:
        raise SqlRefused(f"{table.name!r} is not a known mart; readable marts: {_listing(known)}")
    columns = known[name]
    if tenant_id is not None and columns is not None and TENANT_COLUMN not in columns:
        raise SqlRefused(f"mart {name} is platform-wide (it has no tenant_id), so a tenant cannot read it")
    if extra:
        raise SqlRefused(f"{name}: {', '.join(extra)} is not supported on marts")
    table.replace(_scoped_subquery(table, name, tenant_id, catalog))


def _scoped_subquery(table: exp.Table, name: str, tenant_id: str | None, catalog: str | None) -> exp.Subquery:
    source = exp.Table(
        this=exp.to_identifier(name, quoted=True),
        db=exp.to_identifier(MARTS_SCHEMA, quoted=True),
        catalog=exp.to_identifier(catalog, quoted=True) if catalog else None,
    )
    inner = exp.select(exp.Star()).from_(source)
    if tenant_id is not None:
        tenant_filter = exp.EQ(this=exp.column(TENANT_COLUMN, quoted=True), expression=exp.Literal.string(tenant_id))
        inner = inner.where(tenant_filter)
    alias = table.args.get("alias")
    if alias is None:
        # Unaliased references keep their name, so `fct_llm_calls.cost_usd` still resolves.
        alias = exp.TableAlias(this=exp.to_identifier(name, quoted=True))
    subquery = exp.Subquery(this=inner, alias=alias.copy())
    for key in ("pivots", "sample"):
        if table.args.get(key):
            subquery.set(key, table.args[key])
    return subquery


def _is_cte_reference(table: exp.Table, name: str) -> bool:
    """Does `name` at this point of the tree resolve to a CTE, by SQL's visibility rules?

    A CTE is visible in its query's body and in the CTEs after it; inside its own body only when
    the WITH is RECURSIVE. A non-recursive self-reference therefore means a real table, which is
    exactly how DuckDB resolves it, so it is checked as one (and refused unless it is a mart).
    """
    node: exp.Expression = table
    parent = node.parent
    while parent is not None:
        if isinstance(parent, exp.CTE) and isinstance(parent.parent, exp.With):
            with_ = parent.parent
            ctes = list(with_.expressions)
            index = next(i for i, cte in enumerate(ctes) if cte is parent)
            visible = ctes[: index + 1] if with_.args.get("recursive") else ctes[:index]
            if any(cte.alias_or_name.lower() == name for cte in visible):
                return True
            # The owning query's other CTEs were just considered; continue above that query.
            node = with_.parent if with_.parent is not None else with_
            parent = node.parent
            continue
        with_ = parent.args.get("with_") if isinstance(parent, exp.Query) else None
        if (
            with_ is not None
            and node is not with_
            and any(cte.alias_or_name.lower() == name for cte in with_.expressions)
        ):
            return True
        node, parent = parent, parent.parent
    return False


def _strip_mart_qualifiers(tree: exp.Expression, known: dict[str, frozenset[str] | None]) -> None:
    """`marts.fct_x.col` becomes `fct_x.col`: the subquery carries the mart's name as its alias."""
    for column in tree.find_all(exp.Column):
        if column.args.get("catalog"):
            raise SqlRefused(f"{column.sql(dialect='duckdb')}: column references are table.column at most")
        if column.args.get("db"):
            if column.db.lower() != MARTS_SCHEMA or column.table.lower() not in known:
                raise SqlRefused(f"{column.sql(dialect='duckdb')}: column references are table.column at most")
            column.set("db", None)


def _listing(known: Mapping[str, object]) -> str:
    return ", ".join(sorted(known)) or "none"
