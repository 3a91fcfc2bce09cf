"""Requests and tokens per minute, per tenant and per agent, counted in the ops store.

A sliding-window counter: this minute's count plus last minute's, weighted by how much of last
minute still lies inside the sliding 60 seconds. It needs two rows per scope rather than one
per request, and unlike a fixed window it does not let a burst through at each minute boundary.
Tokens are admitted at their worst case (prompt plus max_tokens) and corrected to the actual
count after the call.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from agentprovision.config.schema import AgentLimits, Tenant
from agentprovision.store.gateway_models import GatewayRateWindow
from agents.gateway.errors import RateLimited

WINDOW_SECONDS = 60


@dataclass(frozen=True)
class RateScope:
    scope: str
    tenant_id: str
    rpm: int | None
    tpm: int | None


@dataclass(frozen=True)
class Admission:
    """What one call counted, so the token count can be corrected after it."""

    windows: tuple[tuple[str, int], ...]  # (scope, window_start)
    tokens: int


def rate_scopes(tenant: Tenant, agent_id: str, agent_limits: AgentLimits | None) -> list[RateScope]:
    scopes = []
    limits = tenant.rate_limits
    if limits.rpm or limits.tpm:
        scopes.append(RateScope(f"tenant:{tenant.id}", tenant.id, limits.rpm, limits.tpm))
    if agent_limits is not None and (agent_limits.rpm or agent_limits.tpm):
        scopes.append(RateScope(f"agent:{agent_id}", tenant.id, agent_limits.rpm, agent_limits.tpm))
    return scopes


class RateLimiter:
    def admit(self, session: Session, scopes: list[RateScope], tokens: int, now: float) -> Admission:
        """Count one request of `tokens` against every scope, or raise RateLimited for the first that is full."""
        window = int(now // WINDOW_SECONDS)
        elapsed = (now % WINDOW_SECONDS) / WINDOW_SECONDS
        counted = []
        rows = []
        for scope in scopes:
            current = self._lock(session, scope, window)
            previous = session.get(GatewayRateWindow, (scope.scope, window - 1))
            weight = 1 - elapsed
            prev_requests = previous.requests * weight if previous else 0.0
            prev_tokens = previous.tokens * weight if previous else 0.0
            if scope.rpm is not None and prev_requests + current.requests + 1 > scope.rpm:
                raise RateLimited(
                    scope.scope,
                    "rpm",
                    scope.rpm,
                    prev_requests + current.requests,
                    _retry_after(previous.requests if previous else 0, current.requests, 1, scope.rpm, elapsed),
                )
            if scope.tpm is not None and prev_tokens + current.tokens + tokens > scope.tpm:
                raise RateLimited(
                    scope.scope,
                    "tpm",
                    scope.tpm,
                    prev_tokens + current.tokens,
                    _retry_after(previous.tokens if previous else 0, current.tokens, tokens, scope.tpm, elapsed),
                )
            rows.append(current)
            counted.append((scope.scope, window))
        for row in rows:
            row.requests += 1
            row.tokens += tokens
        return Admission(tuple(counted), tokens)

    def correct(self, session: Session, admission: Admission, actual_tokens: int) -> None:
        """Replace the admitted worst-case token count by what the call really used."""
        delta = actual_tokens - admission.tokens
        if delta == 0:
            return
        for scope, window in admission.windows:
            row = session.get(GatewayRateWindow, (scope, window), with_for_update=True)
            if row is not None:
                row.tokens = max(0, row.tokens + delta)

    @staticmethod
    def _lock(session: Session, scope: RateScope, window: int) -> GatewayRateWindow:
        key = (scope.scope, window)
        row = session.get(GatewayRateWindow, key, with_for_update=True, populate_existing=True)
        if row is not None:
            return row
        insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
        session.execute(
            insert(GatewayRateWindow)
            .values(scope=scope.scope, window_start=window, tenant_id=scope.tenant_id, requests=0, tokens=0)
            .on_conflict_do_nothing()
        )
        row = session.get(GatewayRateWindow, key, with_for_update=True, populate_existing=True)
        assert row is not None
        return row


def _retry_after(previous: int, current: int, wanted: int, limit: int, elapsed: float) -> float:
    """Seconds until the sliding estimate leaves room for `wanted` more, assuming no other traffic."""
    remaining = (1 - elapsed) * WINDOW_SECONDS
    if current + wanted > limit or previous == 0:
        return remaining + 0.1  # only the next window helps
    # previous * (1 - f) + current + wanted <= limit  =>  f >= 1 - (limit - current - wanted) / previous
    needed = 1 - (limit - current - wanted) / previous
    return max(0.1, (needed - elapsed) * WINDOW_SECONDS)
