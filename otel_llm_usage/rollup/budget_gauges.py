"""Budgets on dashboards: `llm_usage.budget.spent` and `llm_usage.budget.limit`, observable gauges.

One series per configured budget, labelled by `llm_usage.budget.scope` and
`llm_usage.budget.action`, plus `gen_ai.agent.name` where the budget names an agent (a run's own
budgets: the run's agent) and `tenant.id` where it names a tenant. A run or session budget limits
many runs or sessions at once; its series shows the open run (held session) nearest its limit
(highest spent / limit): that one's spend and limit. Session and run ids become labels only when
the user lists them in `metric_attributes`, as any opted-in attribute does, splitting the series.

The gauges are registered once per MeterProvider (the SDK keeps calling only the first
registration's callbacks for a name); each `instrument()` points them at its rollup.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics

from .. import semconv as sc
from .._guard import report
from .run import Run

if TYPE_CHECKING:
    from .budgets import Budget, BudgetPolicy
    from .ledgers import Rollup
    from .sessions import SessionLedger

# (labels, spent, limit) of one series
Point = tuple[dict[str, Any], float, float]


class GaugeSource:
    """What the gauges of one MeterProvider read: the active rollup, or nothing."""

    __slots__ = ("rollup",)

    def __init__(self) -> None:
        self.rollup: Rollup | None = None

    def points(self) -> list[Point]:
        rollup = self.rollup
        if rollup is None or not rollup.enabled:
            return []
        try:
            return rollup.budget_points()
        except Exception as exc:
            report("rollup.budget_gauges", exc)
            return []


_sources: weakref.WeakKeyDictionary[object, GaugeSource] = weakref.WeakKeyDictionary()


def gauge_source(meter: metrics.Meter, meter_provider: metrics.MeterProvider | None) -> GaugeSource:
    """The provider's one source, its gauges registered on first use."""
    provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
    try:
        source = _sources.get(provider)
    except TypeError:  # a provider that cannot be weakly referenced: register on it every time
        source = None
    if source is not None:
        return source
    source = GaugeSource()
    meter.create_observable_gauge(
        sc.METRIC_BUDGET_SPENT,
        [lambda options: _observe(source, spent=True)],
        sc.UNIT_USD,
        "Spent so far against a configured budget (for run and session budgets: the open run or "
        "session nearest its limit).",
    )
    meter.create_observable_gauge(
        sc.METRIC_BUDGET_LIMIT,
        [lambda options: _observe(source, spent=False)],
        sc.UNIT_USD,
        "The limit of a configured budget (for run and session budgets: of the one reported as spent).",
    )
    try:
        _sources[provider] = source
    except TypeError:
        pass
    return source


def _observe(source: GaugeSource, *, spent: bool) -> Iterator[metrics.Observation]:
    for labels, spent_usd, limit_usd in source.points():
        yield metrics.Observation(spent_usd if spent else limit_usd, labels)


def _ratio(spent: float, limit: float) -> float:
    if limit > 0:
        return spent / limit
    return float("inf") if spent > 0 else 0.0


class Nearest:
    """Per label set, the (spent, limit) nearest its limit."""

    def __init__(self) -> None:
        self.best: dict[frozenset[tuple[str, Any]], tuple[float, Point]] = {}

    def add(self, labels: dict[str, Any], spent: float, limit: float) -> None:
        try:
            key = frozenset(labels.items())
        except TypeError:  # an opted-in attribute holding a list
            key = frozenset((k, tuple(v) if isinstance(v, list) else v) for k, v in labels.items())
        ratio = _ratio(spent, limit)
        held = self.best.get(key)
        if held is None or ratio > held[0]:
            self.best[key] = (ratio, (labels, spent, limit))

    def points(self) -> list[Point]:
        return [point for _, point in self.best.values()]


def budget_labels(scope: str, budget: Budget, agent: str | None, extra: Mapping[str, Any]) -> dict[str, Any]:
    labels: dict[str, Any] = {sc.BUDGET_SCOPE: scope, sc.BUDGET_ACTION: budget.action}
    labels.update(extra)
    if agent:
        labels[sc.AGENT_NAME] = agent
    tenant = getattr(budget, "tenant", None)
    if isinstance(tenant, str) and tenant:
        labels[sc.BUDGET_TENANT_ID] = tenant
    return labels


def opted_in(attrs: Mapping[str, Any] | None, keys: Iterable[str]) -> dict[str, Any]:
    """The holder's attributes the user allowed on metrics, the agent aside (a budget's own label)."""
    if not attrs:
        return {}
    return {k: attrs[k] for k in keys if k in attrs and k != sc.AGENT_NAME}


def collect(
    policy: BudgetPolicy, runs: Iterable[Run], sessions: Iterable[SessionLedger], keys: tuple[str, ...]
) -> list[Point]:
    """The series of every configured budget: each global one always (at 0 spent when nothing it
    limits is open), each run's or session's own while that run is open or that session held."""
    out = Nearest()
    for b in policy.process_budgets:
        out.add(budget_labels("process", b, None, {}), policy.process_spent(), b.max_cost_usd)
    _holders(out, "run", policy.run_budgets, _runs(runs, keys))
    _holders(out, "session", policy.session_budgets, _sessions(sessions, keys))
    return out.points()


def _runs(runs: Iterable[Run], keys: tuple[str, ...]) -> Iterator[tuple[float, Run, dict[str, Any]]]:
    for r in runs:
        yield r.usage.cost_usd, r, opted_in(r.metric_attrs, keys)


def _sessions(
    sessions: Iterable[SessionLedger], keys: tuple[str, ...]
) -> Iterator[tuple[float, SessionLedger, dict[str, Any]]]:
    for s in sessions:
        yield s.usage.cost_usd, s, opted_in(s.metric_attrs, keys)


def _holders(
    out: Nearest,
    scope: str,
    shared: tuple[Budget, ...],
    holders: Iterable[tuple[float, Run | SessionLedger, dict[str, Any]]],
) -> None:
    seen: set[Budget] = set()
    for spent, holder, extra in holders:
        agent = holder.agent if isinstance(holder, Run) else None
        for b in shared:
            if scope == "run" and b.agent is not None and b.agent != agent:
                continue
            out.add(
                budget_labels(scope, b, b.agent if scope == "run" else None, extra), spent, b.max_cost_usd
            )
            seen.add(b)
        for b in holder.budgets:
            out.add(budget_labels(scope, b, agent, extra), spent, b.max_cost_usd)
    for b in shared:
        if b not in seen:
            out.add(budget_labels(scope, b, b.agent if scope == "run" else None, {}), 0.0, b.max_cost_usd)
