"""Spending limits on a run, a session or the whole process, and the policy that applies them."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from opentelemetry import trace

from .. import _fork
from .._guard import report
from ..listener import CallRefused
from ..semconv import (
    BUDGET_ACTION,
    BUDGET_EXCEEDED_EVENT,
    BUDGET_KEY,
    BUDGET_LIMIT_USD,
    BUDGET_SCOPE,
    BUDGET_SPENT_USD,
)
from ..usage import Usage
from .run import RUN, Run
from .sessions import SessionLedger, Sessions
from .tables import CappedTable, TenantLedger

log = logging.getLogger("otel_llm_usage")

Scope = Literal["run", "session", "tenant", "process"]  # what a budget limits (its `scope`)
Action = Literal["warn", "raise"]


@dataclass(frozen=True, slots=True)
class Budget:
    """A cost limit in USD. `agent` narrows a run budget to runs of that agent.

    A `scope="tenant"` budget limits what each tenant (`tenant_id=` of `session()`, `run()`,
    `record_call()`) spends in this process: with `tenant=None` every tenant has this limit of its
    own; with `tenant="acme"` it applies to that tenant only.
    """

    max_cost_usd: float
    scope: Scope = "run"
    action: Action = "warn"
    agent: str | None = None
    tenant: str | None = None

    def __post_init__(self) -> None:
        if not self.max_cost_usd >= 0:
            raise ValueError("max_cost_usd must be a non-negative number")
        if self.scope not in ("run", "session", "tenant", "process"):
            raise ValueError(f"scope must be 'run', 'session', 'tenant' or 'process', not {self.scope!r}")
        if self.action not in ("warn", "raise"):
            raise ValueError(f"action must be 'warn' or 'raise', not {self.action!r}")
        if self.tenant is not None:
            if not isinstance(self.tenant, str) or not self.tenant:
                raise ValueError(f"tenant must be a non-empty string or None, not {self.tenant!r}")
            if self.scope != "tenant":
                raise ValueError(f"tenant is for scope='tenant' budgets, not scope={self.scope!r}")


class BudgetExceeded(CallRefused):
    """Raised from an LLM call, before its request is sent, once its scope has spent its limit."""

    def __init__(self, scope: str, key: str | None, limit_usd: float, spent_usd: float) -> None:
        self.scope = scope
        self.key = key
        self.limit_usd = limit_usd
        self.spent_usd = spent_usd
        where = f"{scope} {key!r}" if key else scope
        super().__init__(f"LLM budget exceeded for {where}: spent ${spent_usd:.6f} of ${limit_usd:.6f}")


# (budget scope, key, budget, spent so far, holder): one limit that applies to a call.
Limit = tuple[str, str | None, Budget, float, Any]


class BudgetPolicy:
    """Refuses calls over a `raise` budget; reports each budget the first time it is exceeded."""

    def __init__(
        self,
        budgets: tuple[Budget, ...],
        callback: Callable[[dict[str, Any]], Any] | None,
        sessions: Sessions,
        process: Usage,
        tenants: CappedTable[TenantLedger] | None = None,
    ) -> None:
        self.run_budgets = tuple(b for b in budgets if b.scope == "run")
        self.session_budgets = tuple(b for b in budgets if b.scope == "session")
        self.tenant_budgets = tuple(b for b in budgets if b.scope == "tenant")
        self.process_budgets = tuple(b for b in budgets if b.scope == "process")
        self._tenants = tenants
        self.active = bool(budgets)  # also set once a run or session brings budgets of its own
        self.session_own = False  # set once a session brings budgets of its own
        self._process_exceeded: set[Budget] = set()
        self._lock = _fork.lock()
        self._callback = callback
        self._sessions = sessions
        self._process = process

    def reset_process(self, process: Usage) -> None:
        """Follow the process ledger `reset_usage()` put in place; its budgets may be reported again."""
        with self._lock:
            self._process = process
            self._process_exceeded = set()

    def replaced(
        self, budgets: tuple[Budget, ...], callback: Callable[[dict[str, Any]], Any] | None
    ) -> BudgetPolicy:
        """A policy with other budgets over the same ledgers (`instrument()` again): a process budget
        already reported stays reported, and runs or sessions with budgets of their own still count."""
        policy = BudgetPolicy(budgets, callback, self._sessions, self._process, self._tenants)
        policy.active = policy.active or self.active
        policy.session_own = self.session_own
        policy._process_exceeded = self._process_exceeded
        return policy

    def _run_budgets_of(self, run: Run) -> list[Budget]:
        out = [b for b in self.run_budgets if b.agent is None or b.agent == run.agent]
        out.extend(run.budgets)
        return out

    def limits(self, run: Run | None, session_id: str | None, tenant_id: str | None = None) -> list[Limit]:
        """Every budget that applies to a call made in `run`, `session_id` and `tenant_id`."""
        out: list[Limit] = []
        r = run
        while r is not None:
            if r.kind == RUN:
                budgets = self._run_budgets_of(r)
                if budgets:
                    spent = r.usage.cost_usd
                    out.extend(("run", r.name, b, spent, r) for b in budgets)
            r = r.parent
        if session_id is not None:
            held = self._sessions.read(session_id, lambda s: s)
            if held is not None:
                spent = held.usage.cost_usd
                out.extend(
                    ("session", session_id, b, spent, held) for b in (*self.session_budgets, *held.budgets)
                )
        if tenant_id is not None and self.tenant_budgets and self._tenants is not None:
            budgets = [b for b in self.tenant_budgets if b.tenant is None or b.tenant == tenant_id]
            ledger = self._tenants.get(tenant_id) if budgets else None
            if ledger is not None:
                spent = ledger.usage.cost_usd
                out.extend(("tenant", tenant_id, b, spent, ledger) for b in budgets)
        if self.process_budgets:
            spent = self._process.cost_usd
            out.extend(("process", None, b, spent, self) for b in self.process_budgets)
        return out

    def process_spent(self) -> float:
        return self._process.cost_usd

    def refusal(
        self, run: Run | None, session_id: str | None, tenant_id: str | None = None
    ) -> BudgetExceeded | None:
        """The error to refuse a call with, if a `raise` budget here is already spent: of the
        budgets over their limit, the one with the smallest limit (the innermost scope on a tie)."""
        tightest: Limit | None = None
        for limit in self.limits(run, session_id, tenant_id):
            budget, spent = limit[2], limit[3]
            if (
                budget.action == "raise"
                and spent > budget.max_cost_usd
                and (tightest is None or budget.max_cost_usd < tightest[2].max_cost_usd)
            ):
                tightest = limit
        if tightest is None:
            return None
        scope, key, budget, spent, _ = tightest
        return BudgetExceeded(scope, key, budget.max_cost_usd, spent)

    def check_crossings(self, run: Run | None, session_id: str | None, tenant_id: str | None = None) -> None:
        """After a call: report every budget it pushed over its limit, once per holder."""
        crossed = []
        for scope, key, budget, spent, holder in self.limits(run, session_id, tenant_id):
            if spent > budget.max_cost_usd and self._mark(holder, budget):
                crossed.append((scope, key, budget, spent, holder))
        for item in crossed:
            self._notify(*item, call_run=run)

    def _mark(self, holder: Any, budget: Budget) -> bool:
        """True the first time `budget` is found exceeded for this run, session or process."""
        with self._lock:
            if holder is self:
                seen = self._process_exceeded
            else:
                h: Run | SessionLedger | TenantLedger = holder
                if h.exceeded is None:
                    h.exceeded = set()
                seen = h.exceeded
            if budget in seen:
                return False
            seen.add(budget)
            return True

    def _notify(
        self, scope: str, key: str | None, budget: Budget, spent: float, holder: Any, call_run: Run | None
    ) -> None:
        info: dict[str, Any] = {
            "scope": scope,
            "key": key,
            "limit_usd": budget.max_cost_usd,
            "spent_usd": spent,
            "action": budget.action,
            "budget": budget,
            "run_id": holder.run_id if isinstance(holder, Run) else None,
            "agent": holder.agent if isinstance(holder, Run) else None,
            "session_id": key if scope == "session" else None,
            "tenant_id": key if scope == "tenant" else None,
        }
        event: dict[str, Any] = {
            BUDGET_SCOPE: scope,
            BUDGET_LIMIT_USD: budget.max_cost_usd,
            BUDGET_SPENT_USD: spent,
            BUDGET_ACTION: budget.action,
        }
        if key is not None:
            event[BUDGET_KEY] = key
        span = _event_span(holder if isinstance(holder, Run) else call_run)
        if span is not None:
            span.add_event(BUDGET_EXCEEDED_EVENT, event)
        if budget.action == "warn":
            where = f"{scope} {key!r}" if key else scope
            log.warning(
                "otel-llm-usage: LLM budget exceeded for %s: spent $%.6f of $%.6f",
                where,
                spent,
                budget.max_cost_usd,
            )
        if self._callback is not None:
            try:
                self._callback(info)
            except Exception as exc:
                report("budget_callback", exc)


def _event_span(run: Run | None) -> trace.Span | None:
    """The span a budget event goes on: the innermost open run's, else the current span."""
    r = run
    while r is not None:
        span = r.span
        if span is not None and span.is_recording():
            return span
        r = r.parent
    current = trace.get_current_span()
    return current if current.is_recording() else None
