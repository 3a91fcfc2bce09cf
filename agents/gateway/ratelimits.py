"""Requests and tokens per minute, per tenant and per agent, counted in the ops store.

A sliding-window counter: this minute's count plus last minute's, weighted by how much of last
minute still lies inside the sliding 60 seconds. It needs two rows per scope rather than one
per request, and unlike a fixed window it does not let a burst through at each minute boundary.
Tokens are admitted at their worst case (prompt plus max_tokens) and corrected to the actual
count after the call.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Float, and_, bindparam, case, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from agentprovision.config.schema import AgentLimits, Tenant
from agentprovision.store.gateway_models import GatewayRateWindow
from agents.gateway.errors import RateLimited
from agents.gateway.ledger import LedgerStatement, LedgerTransaction

WINDOW_SECONDS = 60

_WINDOWS = GatewayRateWindow.__table__
_W = _WINDOWS.c
_PREVIOUS = _WINDOWS.alias("previous")
_THIS_WINDOW = and_(_W.scope == bindparam("p_scope"), _W.window_start == bindparam("window"))
_TOKENS = bindparam("p_tokens")
_WEIGHT = bindparam("weight", type_=Float)


_COUNTED = {"requests": _W.requests + 1, "tokens": _W.tokens + _TOKENS}


def _previous(column_name: str) -> object:
    """Last minute's count of this scope, 0 if it had none."""
    column = _PREVIOUS.c[column_name]
    last_minute = select(column).where(
        _PREVIOUS.c.scope == bindparam("p_scope"), _PREVIOUS.c.window_start == bindparam("previous_window")
    )
    return func.coalesce(last_minute.scalar_subquery(), 0)


def _admit_statement(rpm: bool, tpm: bool) -> LedgerStatement:
    """Count one request if it fits every limit the scope has: check and increment in one statement."""
    conditions = [_THIS_WINDOW]
    if rpm:
        conditions.append(_W.requests + 1 + _WEIGHT * _previous("requests") <= bindparam("rpm"))
    if tpm:
        conditions.append(_W.tokens + _TOKENS + _WEIGHT * _previous("tokens") <= bindparam("tpm"))
    return LedgerStatement(update(_WINDOWS).where(*conditions).values(_COUNTED))


# One statement per combination of limits, each compiled once per dialect (see ledger.py).
_ADMIT = {(rpm, tpm): _admit_statement(rpm, tpm) for rpm in (False, True) for tpm in (False, True)}
_COUNT = LedgerStatement(update(_WINDOWS).where(_THIS_WINDOW).values(_COUNTED))  # checked under the row lock
_READ_CURRENT = LedgerStatement(select(_W.requests, _W.tokens).where(_THIS_WINDOW).with_for_update())
_READ_PREVIOUS = LedgerStatement(
    select(_W.requests, _W.tokens).where(
        _W.scope == bindparam("p_scope"), _W.window_start == bindparam("previous_window")
    )
)
_corrected = _W.tokens + bindparam("delta")
_CORRECT = LedgerStatement(
    update(_WINDOWS).where(_THIS_WINDOW).values(tokens=case((_corrected < 0, 0), else_=_corrected))
)


def _window_insert(dialect_insert: object) -> LedgerStatement:
    """Create a scope's row for a minute unless another transaction just did."""
    return LedgerStatement(
        dialect_insert(_WINDOWS)  # type: ignore[operator]
        .values(
            scope=bindparam("p_scope"),
            window_start=bindparam("window"),
            tenant_id=bindparam("v_tenant"),
            requests=0,
            tokens=0,
        )
        .on_conflict_do_nothing()
    )


_CREATE_WINDOW = {"postgresql": _window_insert(postgresql.insert), "sqlite": _window_insert(sqlite.insert)}


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
    """Admission against per-minute windows; every method runs inside the caller's transaction.

    The common case is one conditional UPDATE per scope (the window row exists and the call fits).
    Only a refusal or the first call of a minute reads rows: under the row lock, so the numbers in
    RateLimited are the ones that refused, and a call that fits after all is still admitted.
    """

    def admit(
        self, tx: LedgerTransaction, scopes: list[RateScope] | tuple[RateScope, ...], tokens: int, now: float
    ) -> Admission:
        """Count one request of `tokens` against every scope, or raise RateLimited for the first that is full."""
        window = int(now // WINDOW_SECONDS)
        elapsed = (now % WINDOW_SECONDS) / WINDOW_SECONDS
        counted = []
        for scope in scopes:
            params = {
                "p_scope": scope.scope,
                "window": window,
                "previous_window": window - 1,
                "p_tokens": tokens,
                "weight": 1 - elapsed,
                "rpm": scope.rpm,
                "tpm": scope.tpm,
            }
            statement = _ADMIT[(scope.rpm is not None, scope.tpm is not None)]
            if tx.execute(statement, params) != 1:
                self._admit_slowly(tx, scope, window, tokens, elapsed)
            counted.append((scope.scope, window))
        return Admission(tuple(counted), tokens)

    def correct(self, tx: LedgerTransaction, admission: Admission, actual_tokens: int) -> None:
        """Replace the admitted worst-case token count by what the call really used."""
        delta = actual_tokens - admission.tokens
        if delta == 0:
            return
        for scope, window in admission.windows:
            tx.execute(_CORRECT, {"p_scope": scope, "window": window, "delta": delta})

    @staticmethod
    def _admit_slowly(tx: LedgerTransaction, scope: RateScope, window: int, tokens: int, elapsed: float) -> None:
        """No window row yet this minute, or a limit refuses: decide again under the row lock."""
        key = {"p_scope": scope.scope, "window": window}
        current = tx.first(_READ_CURRENT, key)
        if current is None:
            tx.execute(_CREATE_WINDOW[tx.dialect.name], {**key, "v_tenant": scope.tenant_id})
            current = tx.first(_READ_CURRENT, key)
            assert current is not None  # just inserted, or inserted by a concurrent transaction we waited for
        requests, used_tokens = current
        previous = tx.first(_READ_PREVIOUS, {"p_scope": scope.scope, "previous_window": window - 1})
        last_requests, last_tokens = previous if previous is not None else (0, 0)
        weight = 1 - elapsed
        prev_requests = last_requests * weight
        prev_tokens = last_tokens * weight
        if scope.rpm is not None and prev_requests + requests + 1 > scope.rpm:
            raise RateLimited(
                scope.scope,
                "rpm",
                scope.rpm,
                prev_requests + requests,
                _retry_after(last_requests, requests, 1, scope.rpm, elapsed),
            )
        if scope.tpm is not None and prev_tokens + used_tokens + tokens > scope.tpm:
            raise RateLimited(
                scope.scope,
                "tpm",
                scope.tpm,
                prev_tokens + used_tokens,
                _retry_after(last_tokens, used_tokens, tokens, scope.tpm, elapsed),
            )
        tx.execute(_COUNT, {**key, "p_tokens": tokens})


def _retry_after(previous: int, current: int, wanted: int, limit: int, elapsed: float) -> float:
    """Seconds until the sliding estimate leaves room for `wanted` more, assuming no other traffic."""
    remaining = (1 - elapsed) * WINDOW_SECONDS
    if current + wanted > limit or previous == 0:
        return remaining + 0.1  # only the next window helps
    # previous * (1 - f) + current + wanted <= limit  =>  f >= 1 - (limit - current - wanted) / previous
    needed = 1 - (limit - current - wanted) / previous
    return max(0.1, (needed - elapsed) * WINDOW_SECONDS)
