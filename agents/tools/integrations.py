"""open_ticket, post_message and fetch_page: agent actions through the integration hub.

Actions go through `connectors.actions.run_action`, which loads the integration from the applied
config scoped by tenant, builds the connector with its credential and allowed hosts, and leaves
an audit record. A connector's HTTP client refuses any host the integration does not list, so a
model cannot send data anywhere else. fetch_page reads one page through the docs connector's own
page reader with the integration's allowed hosts and no credential attached: reading a page never
needs the integration's secret, and so can never leak it to the page's host.

An agent's parameters may name the integrations it may use (`integrations: [id, ...]`); without
that, any active integration of its tenant that offers the action.

Side effects happen once per tool call: a worker killed after a ticket was opened but before the
run's checkpoint runs the same call again on resume, so each action's result is recorded (an audit
record keyed by run and tool-call id, written right after the service answered) and a repeated
call returns the recorded result instead of acting again. Jira and Slack take no idempotency key,
so the one remaining window is the few milliseconds between the service's answer and that record.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field
from sqlalchemy import select

from agentprovision.store.audit import append_audit
from agentprovision.store.db import session_factory
from agentprovision.store.models import AuditRecord, Integration
from agents.tools.base import Arguments, BuiltinTool, ToolContext, ToolError, ToolResult, truncate
from connectors.actions import run_action
from connectors.credentials import SecretResolver
from connectors.docs import DocsConnector
from connectors.errors import ConnectorError, HostNotAllowed, IntegrationNotFound
from connectors.http import host_allowed
from connectors.sdk import ConnectorContext
from connectors.sync import SyncOptions, load_integration
from governance.tenancy import tenant_session

# Which built-in kinds offer which action; a plug-in kind is used when named explicitly.
ACTION_KINDS = {"create_issue": ("jira", "github"), "post_message": ("slack",)}
MAX_PAGE_CHARS = 10_000


def resolver_for(ctx: ToolContext) -> SecretResolver:
    if ctx.resolver is not None:
        return ctx.resolver
    try:
        from governance.vault import CredentialVault, load_keyring

        vault = CredentialVault(ctx.engine, load_keyring(ctx.settings.state_dir))
    except Exception:  # no usable key: secret:// references then fail with the vault's own advice
        vault = None
    return SecretResolver(vault, actor=ctx.actor)


def options_for(ctx: ToolContext) -> SyncOptions:
    if ctx.connector_options is not None:
        return ctx.connector_options
    return SyncOptions(base_dir=ctx.settings.config_dir.resolve())


def allowed_integrations(ctx: ToolContext) -> list[str] | None:
    """The agent's own list of integrations, or None when it may use any of its tenant's."""
    listed = ctx.parameters.get("integrations")
    return [str(i) for i in listed] if isinstance(listed, list) else None


def active_integrations(ctx: ToolContext) -> list[Integration]:
    with tenant_session(session_factory(ctx.engine), ctx.tenant_id) as session:
        rows = session.scalars(
            select(Integration)
            .where(Integration.tenant_id == ctx.tenant_id, Integration.status == "active")
            .order_by(Integration.integration_id)
        ).all()
        session.expunge_all()
    allowed = allowed_integrations(ctx)
    return [r for r in rows if allowed is None or r.integration_id in allowed]


def choose_integration(ctx: ToolContext, named: str | None, action: str) -> str:
    allowed = allowed_integrations(ctx)
    if named:
        if allowed is not None and named not in allowed:
            raise ToolError(
                f"this agent may not use integration {named!r}; it may use: {', '.join(allowed) or 'none'}", "policy"
            )
        return named
    candidates = [r.integration_id for r in active_integrations(ctx) if r.kind in ACTION_KINDS.get(action, ())]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise ToolError(f"no integration of this tenant offers {action}; nothing was sent", "policy")
    raise ToolError(f"several integrations offer {action} ({', '.join(candidates)}); name one in `integration`")


ONCE_ACTION = "agent.tool_action"


def _tool_call_id() -> str | None:
    """The runtime's id of the call being executed (a context variable), when a runtime is driving us."""
    try:
        from agents.runtime import current_tool_call_id
    except ImportError:  # the tools used on their own, without the runtime
        return None
    return current_tool_call_id()


def act_once(ctx: ToolContext, tool: str, integration: str, action: str, params: dict[str, Any]) -> dict[str, Any]:
    """Run the action unless this run's tool call already did; either way return the action's result."""
    call_id = _tool_call_id()
    if call_id is None:
        return act(ctx, integration, action, params)
    key = f"{ctx.run_id}/{call_id}"
    factory = session_factory(ctx.engine)
    with tenant_session(factory, ctx.tenant_id) as session:
        done = session.scalar(
            select(AuditRecord.details).where(
                AuditRecord.tenant_id == ctx.tenant_id, AuditRecord.action == ONCE_ACTION, AuditRecord.target_id == key
            )
        )
    if done is not None:
        return dict(done.get("result") or {})
    result = act(ctx, integration, action, params)
    with tenant_session(factory, ctx.tenant_id) as session:
        append_audit(
            session,
            actor=ctx.actor,
            action=ONCE_ACTION,
            target_type="tool_call",
            target_id=key,
            tenant_id=ctx.tenant_id,
            source="agent",
            # Only the service's ids of what was created (ticket key, message ts): never the text sent.
            details={"tool": tool, "integration": integration, "action": action, "result": result},
        )
    return result


def act(ctx: ToolContext, integration: str, action: str, params: dict[str, Any]) -> dict[str, Any]:
    try:
        return run_action(
            ctx.engine,
            ctx.tenant_id,
            integration,
            action,
            params,
            actor=ctx.actor,
            resolver=resolver_for(ctx),
            options=options_for(ctx),
        )
    except ConnectorError as exc:
        raise _tool_error(exc) from None


def _tool_error(exc: ConnectorError) -> ToolError:
    policy = isinstance(exc, HostNotAllowed | IntegrationNotFound)
    return ToolError(str(exc), error_class="policy" if policy else "tool")


def _kind(ctx: ToolContext, integration: str) -> str:
    with tenant_session(session_factory(ctx.engine), ctx.tenant_id) as session:
        try:
            return load_integration(session, ctx.tenant_id, integration).kind
        except IntegrationNotFound as exc:
            raise _tool_error(exc) from None


class TicketArgs(Arguments):
    title: str = Field(min_length=1, max_length=250, description="One-line summary of the ticket.")
    body: str = Field(default="", max_length=30_000, description="What happened, evidence, proposed next step.")
    labels: list[str] = Field(default_factory=list, max_length=10)
    integration: str | None = Field(default=None, description="Integration id; may be left out if only one fits.")


class OpenTicket(BuiltinTool):
    name = "open_ticket"
    description = "Open a ticket (Jira issue, GitHub issue) through one of the tenant's integrations."
    read_only = False
    needs_approval = True
    Args = TicketArgs

    def call(self, ctx: ToolContext, args: TicketArgs) -> ToolResult:
        integration = choose_integration(ctx, args.integration, "create_issue")
        if _kind(ctx, integration) == "jira":
            params = {"summary": args.title, "description": args.body, "labels": args.labels}
        else:
            params = {"title": args.title, "body": args.body, "labels": args.labels}
        created = act_once(ctx, self.name, integration, "create_issue", params)
        return ToolResult.of({"integration": integration, "ticket": created}, outcome="ticket_opened")


class MessageArgs(Arguments):
    text: str = Field(min_length=1, max_length=20_000, description="The message.")
    thread_ts: str | None = Field(default=None, description="Reply in this thread (Slack ts).")
    integration: str | None = Field(default=None, description="Integration id; may be left out if only one fits.")


class PostMessage(BuiltinTool):
    name = "post_message"
    description = "Post a message to a chat channel through one of the tenant's integrations (Slack)."
    read_only = False
    needs_approval = True
    Args = MessageArgs

    def call(self, ctx: ToolContext, args: MessageArgs) -> ToolResult:
        integration = choose_integration(ctx, args.integration, "post_message")
        params: dict[str, Any] = {"text": args.text}
        if args.thread_ts:
            params["thread_ts"] = args.thread_ts
        posted = act_once(ctx, self.name, integration, "post_message", params)
        return ToolResult.of({"integration": integration, "message": posted}, outcome="message_posted")


class PageArgs(Arguments):
    url: str = Field(min_length=8, max_length=2000, pattern=r"^https?://", description="http(s) URL of the page.")
    integration: str | None = Field(default=None, description="Integration whose allowed hosts cover the URL.")


class FetchPage(BuiltinTool):
    name = "fetch_page"
    description = (
        "Fetch one web page (Markdown or HTML, returned as text) from a host one of the tenant's integrations "
        "allows. No credential is sent."
    )
    read_only = True
    Args = PageArgs

    def call(self, ctx: ToolContext, args: PageArgs) -> ToolResult:
        candidates = active_integrations(ctx)
        if args.integration:
            candidates = [r for r in candidates if r.integration_id == args.integration]
            if not candidates:
                raise ToolError(f"integration {args.integration!r} is not available to this agent", "policy")
        chosen = next((r for r in candidates if host_allowed(args.url, r.spec.get("allowed_hosts") or [])), None)
        if chosen is None:
            raise ToolError("no integration of this tenant allows that host; the page was not fetched", "policy")
        options = options_for(ctx)
        context = ConnectorContext(
            tenant_id=ctx.tenant_id,
            integration_id=chosen.integration_id,
            allowed_hosts=tuple(chosen.spec.get("allowed_hosts") or ()),
            base_dir=options.base_dir or ctx.settings.config_dir.resolve(),
            retry=options.retry,
        )
        reader = DocsConnector({"pages": [args.url]}, context)
        try:
            documents = [
                row for batch in reader.read(reader.stream("documents"), None) for row in batch.table().to_pylist()
            ]
        except ConnectorError as exc:
            raise _tool_error(exc) from None
        page = documents[0] if documents else {"title": "", "body": ""}
        text = page.get("body") or ""
        return ToolResult.of(
            {
                "integration": chosen.integration_id,
                "url": args.url,
                "title": page.get("title"),
                "text": truncate(text, MAX_PAGE_CHARS),
            }
        )
