"""From span to pager: the demo's LLM calls, scraped by a real Prometheus, page through Alertmanager.

The demo workload runs as a subprocess serving /metrics. Prometheus scrapes it every second with
the package's recording rules and a test copy of its alert rules; Alertmanager, configured with the
repository's routing tree, delivers to a webhook receiver inside this test process.

The shipped spend budget (20 USD/hour sustained for 15 minutes) cannot be reached by seconds of
traffic, so the test copy of alerts.yml lowers the threshold of the overall LLMSpendRateOverBudget
rule to TEST_SPEND_THRESHOLD_USD_PER_HOUR and its `for` to 0s (`harness.lowered_alert_rules`, the
only change). LLMUnpricedRequests fires as shipped: the demo calls the unpriced model "house-llm".

Skipped without the prometheus and prometheus-alertmanager binaries, except when CI is set.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest
import yaml

from .harness import (
    ALERT_RULES,
    RECORDING_RULES,
    TEST_SPEND_THRESHOLD_USD_PER_HOUR,
    AlertingStack,
    Deadline,
    require_binaries,
    shared_alerting_stack,
)

# Every wait of this module, stack start-up included, shares this budget (seconds).
MODULE_BUDGET_S = 85.0

# Run name printed by the demo -> the agent of that run (examples/demo.py).
DEMO_RUNS = {"triage": "triage", "research": "researcher", "answer": "writer"}
# Runs whose only priced call is one call to this model: its cost counter grows by the run's cost.
SINGLE_CALL_RUNS = {"triage": "gpt-4o-mini", "writer": "o4-mini"}
# The (agent, request model) pairs that have a cost; house-llm has none (it is unpriced).
PRICED_SERIES = {
    ("triage", "gpt-4o-mini"),
    ("researcher", "text-embedding-3-small"),
    ("researcher", "gpt-4o"),
    ("writer", "o4-mini"),
}
UNPRICED_MODEL = "house-llm"
# Recording rules over the tenant label: the demo records no tenant.id, so they have no series.
RECORDINGS_WITHOUT_DATA = {
    "tenant:llm_usage_spend_usd_per_hour:rate5m": "the demo sets no tenant.id metric attribute",
    "tenant:llm_usage_spend_usd_per_month:projected_rate1h": "the demo sets no tenant.id metric attribute",
}
# The demo prints run costs with 6 decimals.
PRINT_ROUNDING = 5e-7
_RUN_LINE = re.compile(r"^\s*run (\w+)\s.*\bcost=\$([0-9.]+)", re.MULTILINE)


@pytest.fixture(scope="module")
def budget() -> Deadline:
    return Deadline(MODULE_BUDGET_S)


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest, budget: Deadline) -> Iterator[AlertingStack]:
    binaries = require_binaries("prometheus", "alertmanager")
    with shared_alerting_stack(request, binaries, budget) as shared:
        yield shared


def _shipped_alert_rules() -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load(ALERT_RULES.read_text())["groups"] for r in g["rules"]]


def _seconds(duration: str) -> int:
    """A Prometheus duration of one unit ("15m") in seconds."""
    number, unit = re.fullmatch(r"([0-9]+)([smhd])", duration).groups()  # type: ignore[union-attr]
    return int(number) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


def _labels(sample: dict[str, str], *names: str) -> tuple[str, ...]:
    return tuple(sample.get(name, "") for name in names)


def printed_run_costs(stack: AlertingStack, deadline: Deadline) -> dict[str, float]:
    """The cost the demo prints for each kind of run (identical for every run of that kind)."""

    def probe() -> dict[str, list[float]] | None:
        found: dict[str, list[float]] = {}
        for name, cost in _RUN_LINE.findall(stack.demo.log_text()):
            found.setdefault(name, []).append(float(cost))
        return found if set(found) >= set(DEMO_RUNS) else None

    found = stack.wait("the demo to print a run of each kind", probe, deadline)
    for name, costs in found.items():
        assert len(set(costs)) == 1, f"run {name}: the demo printed different costs {sorted(set(costs))}"
    return {name: costs[0] for name, costs in found.items()}


def test_cost_and_histogram_series_reach_prometheus(stack: AlertingStack, budget: Deadline) -> None:
    prom = stack.prometheus
    last: list[Any] = []

    def cost_series() -> list[tuple[dict[str, str], float]] | None:
        samples = prom.values("llm_usage_cost_USD_total")
        last[:] = samples
        pairs = {_labels(m, "gen_ai_agent_name", "gen_ai_request_model") for m, _ in samples}
        return samples if pairs == PRICED_SERIES else None

    samples = stack.wait(
        "llm_usage_cost_USD_total for every priced demo call", cost_series, budget, last.copy
    )
    for metric, value in samples:
        assert value > 0, metric
        assert metric["job"] == "demo" and metric["gen_ai_provider_name"] == "openai", metric
        assert metric["otel_scope_name"] == "otel_llm_usage", metric
    assert not prom.query(f'llm_usage_cost_USD_total{{gen_ai_request_model="{UNPRICED_MODEL}"}}')
    # The house-llm call follows the writer's priced call: it may land one scrape later.
    ((unpriced, count),) = stack.wait(
        "llm_usage_requests_unpriced_total",
        partial(prom.values_if_any, "llm_usage_requests_unpriced_total"),
        budget,
    )
    assert unpriced["gen_ai_request_model"] == UNPRICED_MODEL and unpriced["gen_ai_agent_name"] == "writer"
    assert count >= 1

    def labelled(series: str, label: str, want: set[str]) -> set[str] | None:
        found = {m.get(label, "") for m, _ in prom.values(f'{series}{{le="+Inf"}}')}
        return found if found == want else None

    models = {model for _, model in PRICED_SERIES} | {UNPRICED_MODEL}
    duration = "gen_ai_client_operation_duration_seconds_bucket"
    stack.wait(
        f"{duration} for every model", partial(labelled, duration, "gen_ai_request_model", models), budget
    )
    run_cost = "llm_usage_run_cost_USD_bucket"
    agents = set(DEMO_RUNS.values())
    stack.wait(
        f"{run_cost} for every agent", partial(labelled, run_cost, "gen_ai_agent_name", agents), budget
    )
    # The explicit boundaries reach Prometheus (not the SDK's default 0, 5, 10, ... buckets).
    les = {m["le"] for m, _ in prom.values('llm_usage_run_cost_USD_bucket{gen_ai_agent_name="writer"}')}
    assert {"0.005", "0.01", "1.0", "+Inf"} <= les, sorted(les)


def test_scraped_costs_match_what_the_demo_prints(stack: AlertingStack, budget: Deadline) -> None:
    printed = printed_run_costs(stack, budget)
    # Today the research run prints $0.019441: gpt-4o 2400 in + 350 out ($0.0095), then 3600 in of
    # which 2048 cached + 350 out ($0.00994), plus a 30-token embedding ($0.0000006) = $0.0194406.
    prom = stack.prometheus

    def run_cost_means() -> dict[str, float] | None:
        means = prom.values(
            "sum by (gen_ai_agent_name) (llm_usage_run_cost_USD_sum)"
            " / sum by (gen_ai_agent_name) (llm_usage_run_cost_USD_count)"
        )
        found = {m["gen_ai_agent_name"]: v for m, v in means}
        return found if set(found) == set(DEMO_RUNS.values()) else None

    means = stack.wait("llm_usage_run_cost_USD_sum / _count for every agent", run_cost_means, budget)
    for run, agent in DEMO_RUNS.items():
        # Two independent paths: the run ledger the demo prints, and the run-cost histogram.
        assert abs(means[agent] - printed[run]) <= PRINT_ROUNDING, (agent, means[agent], printed[run])

    # Counter and histogram are two paths as well (the recorder's per-call counter, the rollup's
    # per-run histogram). A run with a single priced call adds exactly its run cost to the counter,
    # so the counter is a whole multiple of the run cost, to float rounding.
    for agent, model in SINGLE_CALL_RUNS.items():
        ((_, total),) = prom.values(
            f'llm_usage_cost_USD_total{{gen_ai_agent_name="{agent}", gen_ai_request_model="{model}"}}'
        )
        calls = round(total / means[agent])
        assert calls >= 1 and abs(total - calls * means[agent]) < 1e-9, (agent, total, means[agent])

    # The researcher's counter holds its finished runs plus at most the calls of one run in progress.
    # Both sides come from one evaluation; a scrape taken in the middle of a run's last call can
    # still split them, so a mismatch is retried on the next scrape.
    research = means["researcher"]
    seen: list[float] = []

    def in_flight() -> float | None:
        ((_, diff),) = prom.values(
            'sum(llm_usage_cost_USD_total{gen_ai_agent_name="researcher"})'
            ' - sum(llm_usage_run_cost_USD_sum{gen_ai_agent_name="researcher"})'
        )
        seen[:] = [diff]
        return diff if -1e-9 <= diff < research + 1e-9 else None

    stack.wait("researcher cost counter consistent with its finished runs", in_flight, budget, seen.copy)


def test_recording_rules_produce_series(stack: AlertingStack, budget: Deadline) -> None:
    records = [r["record"] for g in yaml.safe_load(RECORDING_RULES.read_text())["groups"] for r in g["rules"]]
    assert set(RECORDINGS_WITHOUT_DATA) <= set(records)
    prom = stack.prometheus
    labels = {"agent:": ("gen_ai_agent_name", set(DEMO_RUNS.values()))}
    labels["model:"] = ("gen_ai_request_model", {model for _, model in PRICED_SERIES})
    seen: list[object] = []

    def recorded(record: str) -> list[tuple[dict[str, str], float]] | None:
        # Polled, not read once: a rate over the first two scrapes is 0 when the demo was starved
        # of CPU between them.
        samples = prom.values(record)
        seen[:] = samples
        if not samples or not all(math.isfinite(v) and v > 0 for _, v in samples):
            return None
        for prefix, (label, want) in labels.items():
            if record.startswith(prefix) and {m[label] for m, _ in samples} != want:
                return None
        return samples

    for record in records:
        if record not in RECORDINGS_WITHOUT_DATA:
            stack.wait(
                f"recorded series {record}, positive, for every agent or model",
                partial(recorded, record),
                budget,
                seen.copy,
            )
    for record, reason in RECORDINGS_WITHOUT_DATA.items():
        # Evaluated (health ok) but empty, for the stated reason.
        (rule,) = [r for r in prom.rules() if r.get("name") == record]
        assert rule["health"] == "ok", rule
        assert not prom.query(record), f"{record} has data although {reason}"
    assert not prom.query('llm_usage_cost_USD_total{tenant_id!=""}')


def test_every_rule_evaluates_against_real_series(stack: AlertingStack, budget: Deadline) -> None:
    """Each rule, LLMContextWindowNearlyFull included, runs on the demo's series without an error."""
    names = {r.get("alert") for r in _shipped_alert_rules()}
    seen: list[object] = []

    def evaluated() -> list[dict[str, Any]] | None:
        rules = stack.prometheus.rules()
        seen[:] = [(r["name"], r["health"], r.get("lastError")) for r in rules if r["health"] != "ok"]
        return rules if all(r["health"] == "ok" for r in rules) else None

    rules = stack.wait("every rule to be evaluated with health ok", evaluated, budget, seen.copy)
    assert names <= {r["name"] for r in rules}


def test_spend_and_unpriced_alerts_fire_and_reach_the_webhook(stack: AlertingStack, budget: Deadline) -> None:
    prom = stack.prometheus
    # The test copy changed the overall spend rule only: threshold and `for`.
    spend_rules = {r["labels"]["scope"]: r for r in prom.rules() if r.get("name") == "LLMSpendRateOverBudget"}
    assert spend_rules["overall"]["duration"] == 0
    assert spend_rules["overall"]["query"].endswith(f"> {TEST_SPEND_THRESHOLD_USD_PER_HOUR!r}")
    shipped = {
        r["labels"]["scope"]: r for r in _shipped_alert_rules() if r["alert"] == "LLMSpendRateOverBudget"
    }
    assert spend_rules["agent"]["duration"] == _seconds(shipped["agent"]["for"])

    def key(alert: dict[str, Any]) -> tuple[str, ...]:
        return _labels(alert["labels"], "alertname", "scope", "gen_ai_request_model")

    expected = {
        ("LLMSpendRateOverBudget", "overall", ""),
        ("LLMUnpricedRequests", "", UNPRICED_MODEL),
    }
    states: list[Any] = []

    def firing() -> list[dict[str, Any]] | None:
        alerts = prom.alerts()
        states[:] = [(key(a), a["state"]) for a in alerts]
        now = [a for a in alerts if a["state"] == "firing"]
        return now if {key(a) for a in now} >= expected else None

    now = stack.wait("both alerts firing in Prometheus", firing, budget, states.copy)
    # Nothing else fires: the other rules keep their shipped thresholds and `for` durations.
    assert {key(a) for a in now} == expected, states
    (unpriced,) = [a for a in now if a["labels"]["alertname"] == "LLMUnpricedRequests"]
    assert unpriced["labels"]["gen_ai_provider_name"] == "openai"
    assert unpriced["labels"]["severity"] == "warning"

    def delivered() -> dict[tuple[str, ...], dict[str, Any]] | None:
        got = {key(a): a for a in stack.webhook.alerts() if a.get("status") == "firing"}
        return got if set(got) >= expected else None

    got = stack.wait(
        "Alertmanager to deliver both alerts to the webhook", delivered, budget, stack.webhook.alerts
    )
    spend = got[("LLMSpendRateOverBudget", "overall", "")]
    assert spend["labels"]["severity"] == "critical"
    assert spend["annotations"]["summary"] == "LLM spend is above the hourly budget"
    assert re.search(r"spend [0-9]+\.[0-9]{2} USD/hour", spend["annotations"]["description"]), spend
    assert UNPRICED_MODEL in got[("LLMUnpricedRequests", "", UNPRICED_MODEL)]["annotations"]["summary"]
    receivers = {p["receiver"] for p in stack.webhook.payloads}
    assert receivers == {"llm-usage-webhook"}, receivers
