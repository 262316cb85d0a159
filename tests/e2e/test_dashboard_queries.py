"""Every query of the Grafana dashboard, run against a real Prometheus scraping the demo.

Grafana variables are replaced the way Grafana would with "All" selected: each query variable by
its `allValue` (".*", used with =~ matchers), `$__rate_interval` by 1m and `$__range` by 5m. A
panel must return data, except the few listed in NO_DATA_PANELS, which the demo cannot feed; for
those the query must still be accepted by Prometheus, and the stated reason must still hold.

Uses the same Prometheus/Alertmanager/demo stack as test_prometheus_alerts.py when both run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest

from .harness import DASHBOARD, AlertingStack, Deadline, require_binaries, shared_alerting_stack

MODULE_BUDGET_S = 60.0
BUILTINS = {"__rate_interval": "1m", "__range": "5m", "__interval": "15s"}

# Panel title -> (why the demo cannot feed it, a query that is empty exactly for that reason).
# The demo feeds every panel today: it makes a failing call and closes its sessions.
NO_DATA_PANELS: dict[str, tuple[str, str]] = {}
DEMO_AGENTS = {"triage", "researcher", "writer"}

_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")
_LABEL_VALUES = re.compile(r"\s*label_values\((.*),\s*([a-zA-Z_]\w*)\s*\)\s*")


def load_dashboard() -> dict[str, Any]:
    board: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return board


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])  # panels of collapsed rows


def all_values(board: dict[str, Any]) -> dict[str, str]:
    """The value of each query variable with "All" selected."""
    out = {}
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            assert var.get("includeAll") and var.get("allValue"), f"${var['name']} has no All value"
            out[var["name"]] = var["allValue"]
    return out


def substitute(expr: str, values: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        if name in BUILTINS:
            return BUILTINS[name]
        assert name in values, f"unknown Grafana variable ${name} in {expr!r}"
        return values[name]

    out = _VARIABLE.sub(replace, expr)
    assert "$" not in out, out
    return out


def panel_targets() -> list[tuple[str, str, str]]:
    """(panel title, refId, PromQL with variables substituted) for every panel target."""
    board = load_dashboard()
    values = all_values(board)
    return [
        (panel["title"], target["refId"], substitute(target["expr"], values))
        for panel in panels(board)
        for target in panel.get("targets", [])
    ]


TARGETS = panel_targets()


@pytest.fixture(scope="module")
def budget() -> Deadline:
    return Deadline(MODULE_BUDGET_S)


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest, budget: Deadline) -> Iterator[AlertingStack]:
    binaries = require_binaries("prometheus", "alertmanager")
    with shared_alerting_stack(request, binaries, budget) as shared:
        yield shared


def test_no_data_list_names_real_panels() -> None:
    titles = {title for title, _, _ in TARGETS}
    assert set(NO_DATA_PANELS) <= titles, set(NO_DATA_PANELS) - titles
    assert len(titles - set(NO_DATA_PANELS)) >= 10, "most panels must be checked for data"


@pytest.mark.parametrize("title,ref,expr", TARGETS, ids=[f"{title} {ref}" for title, ref, _ in TARGETS])
def test_panel_query_returns_data(
    title: str, ref: str, expr: str, stack: AlertingStack, budget: Deadline
) -> None:
    prom = stack.prometheus
    if title in NO_DATA_PANELS:
        reason, witness = NO_DATA_PANELS[title]
        # Wait until the demo's data is there at all, so an empty result means something.
        stack.wait("demo data in Prometheus", partial(prom.query_if_any, "llm_usage_tokens_total"), budget)
        assert not prom.query(witness), f"{witness} now has data: the reason no longer holds ({reason})"
        result = prom.query(expr)  # raises unless Prometheus accepts the query
        assert not result, f"panel {title!r} now returns data; remove it from NO_DATA_PANELS: {result}"
        return
    samples = stack.wait(
        f"panel {title!r} {ref} to return data: {expr}", partial(prom.query_if_any, expr), budget
    )
    assert all("value" in s for s in samples), samples


def test_variable_queries_list_the_demo_labels(stack: AlertingStack, budget: Deadline) -> None:
    board = load_dashboard()
    values = all_values(board)
    listed: dict[str, set[str]] = {}
    for var in board["templating"]["list"]:
        if var["type"] != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        match = _LABEL_VALUES.fullmatch(substitute(query, values))
        assert match, f"${var['name']}: not label_values(selector, label): {query}"
        selector, label = match.groups()
        found = stack.wait(
            f"values of ${var['name']}",
            partial(stack.prometheus.label_values_if_any, label, selector),
            budget,
        )
        listed[var["name"]] = found
    # The Prometheus job of the scraped demo: the dashboard's service variable.
    assert listed["job"] == {"demo"}
    assert listed["provider"] == {"openai"}
    assert {"gpt-4o", "gpt-4o-mini", "o4-mini", "text-embedding-3-small", "house-llm"} <= listed["model"]
    assert listed["agent"] == DEMO_AGENTS
