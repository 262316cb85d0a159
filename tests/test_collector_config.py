"""Checks of the deployment files in collector-config/.

The metric names the rules and the dashboard query are compared with what
opentelemetry-exporter-prometheus really produces for the package's instruments, so a renamed
instrument or unit breaks these tests instead of silently emptying a dashboard. promtool and
amtool validate and unit-test the Prometheus rules and the Alertmanager configuration.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

# --- the package's instruments ----------------------------------------------------------------
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TIME_TO_FIRST_CHUNK_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip
TIME_PER_CHUNK_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.4,
    0.5,
    0.75,
    1.0,
    2.5,
)
COST_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 50.0, 100.0)
RUN_DURATION_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
COUNT_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
UTILIZATION_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)

# (OpenTelemetry name, instrument kind, unit, explicit bucket boundaries of histograms)
INSTRUMENTS: tuple[tuple[str, str, str, tuple[float, ...] | None], ...] = (
    ("gen_ai.client.token.usage", "histogram", "{token}", TOKEN_BUCKETS),
    ("gen_ai.client.operation.duration", "histogram", "s", DURATION_BUCKETS),
    ("gen_ai.client.operation.time_to_first_chunk", "histogram", "s", TIME_TO_FIRST_CHUNK_BUCKETS),
    ("gen_ai.client.operation.time_per_output_chunk", "histogram", "s", TIME_PER_CHUNK_BUCKETS),
    ("llm_usage.tokens", "counter", "{token}", None),
    ("llm_usage.cost", "counter", "USD", None),
    ("llm_usage.requests.unpriced", "counter", "{request}", None),
    ("llm_usage.requests.usage_missing", "counter", "{request}", None),
    ("llm_usage.run.cost", "histogram", "USD", COST_BUCKETS),
    ("llm_usage.run.tokens", "histogram", "{token}", TOKEN_BUCKETS),
    ("llm_usage.run.requests", "histogram", "{request}", COUNT_BUCKETS),
    ("llm_usage.run.duration", "histogram", "s", RUN_DURATION_BUCKETS),
    ("llm_usage.session.cost", "histogram", "USD", COST_BUCKETS),
    ("llm_usage.session.tokens", "histogram", "{token}", TOKEN_BUCKETS),
    ("llm_usage.session.requests", "histogram", "{request}", COUNT_BUCKETS),
    ("llm_usage.session.runs", "histogram", "{run}", COUNT_BUCKETS),
    ("llm_usage.context.utilization", "histogram", "1", UTILIZATION_BUCKETS),
    ("llm_usage.budget.spent", "gauge", "USD", None),
    ("llm_usage.budget.limit", "gauge", "USD", None),
)

# Attributes recorded with each instrument; every label a query may use must come from here.
# tenant.id stands for the opt-in instrument(metric_attributes=["tenant.id"]).
CALL_ATTRIBUTES = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.response.model": "gpt-4o-2024-08-06",
    "gen_ai.agent.name": "planner",
    "tenant.id": "acme",
}
RUN_ATTRIBUTES = {"gen_ai.agent.name": "planner", "tenant.id": "acme"}
SESSION_ATTRIBUTES = {"tenant.id": "acme"}
BUDGET_ATTRIBUTES = {
    "llm_usage.budget.scope": "run",
    "llm_usage.budget.action": "raise",
    "gen_ai.agent.name": "planner",
    "tenant.id": "acme",
}
# Label sets recorded on top of the base attributes, one observation each.
ATTRIBUTE_VARIANTS: dict[str, list[dict[str, str]]] = {
    "gen_ai.client.token.usage": [{"gen_ai.token.type": t} for t in ("input", "output")],
    "gen_ai.client.operation.duration": [{}, {"error.type": "RateLimitError"}],
    "llm_usage.tokens": [
        {"llm_usage.token.type": t}
        for t in ("input", "output", "cache_read", "cache_write", "reasoning", "audio_input", "audio_output")
    ],
    "llm_usage.requests.usage_missing": [{"server.address": "vllm.internal"}],
}
# Labels whose values are an enumeration: an equality matcher on them must use an emitted value.
ENUM_LABELS = ("gen_ai_token_type", "llm_usage_token_type", "gen_ai_operation_name")
# Added by Prometheus at scrape time, not by the exporter.
TARGET_LABELS = frozenset({"job", "instance"})

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "collector-config"
PROM = CONFIG / "prometheus"
EXPECTED_FILES = (
    "otel-collector.yaml",
    "docker-compose.yml",
    "prometheus/prometheus.yml",
    "prometheus/alerts.yml",
    "prometheus/recording.yml",
    "prometheus/tests/alerts_test.yml",
    "prometheus/tests/recording_test.yml",
    "prometheus/tests/utilization_test.yml",
    "alertmanager/alertmanager.yml",
    "grafana/dashboards/llm-usage.json",
    "grafana/provisioning/datasources/prometheus.yml",
    "grafana/provisioning/dashboards/dashboards.yml",
)
EXPECTED_ALERTS = {
    "LLMSpendRateOverBudget",
    "LLMRunCostOverLimit",
    "LLMSessionCostOverLimit",
    "LLMTimeToFirstChunkP95High",
    "LLMErrorRatioHigh",
    "LLMCacheHitRatioCollapse",
    "LLMUnpricedRequests",
    "LLMContextWindowNearlyFull",
    "LLMUsageMissing",
    "LLMBudgetNearlySpent",
}
DS_VARIABLE = "DS_PROMETHEUS"


# --- what the exporter emits ------------------------------------------------------------------
def _attributes_for(name: str) -> dict[str, str]:
    if name.startswith("llm_usage.budget."):
        return BUDGET_ATTRIBUTES
    if name.startswith("llm_usage.run."):
        return RUN_ATTRIBUTES
    if name.startswith("llm_usage.session."):
        return SESSION_ATTRIBUTES
    return CALL_ATTRIBUTES


class Emitted:
    """Series names, label names/values and bucket `le` strings of one exporter scrape."""

    def __init__(self) -> None:
        self.series_by_instrument: dict[str, set[str]] = {}
        self.labels: set[str] = set()
        self.label_values: dict[str, set[str]] = {}
        self.le_by_series: dict[str, list[str]] = {}

    @property
    def series(self) -> set[str]:
        return set().union(*self.series_by_instrument.values())

    def name(self, instrument: str, suffix: str) -> str:
        matches = [s for s in self.series_by_instrument[instrument] if s.endswith(suffix)]
        assert len(matches) == 1, f"{instrument}: expected one series ending in {suffix}, got {matches}"
        return matches[0]


def scrape_instruments() -> Emitted:
    emitted = Emitted()
    for name, kind, unit, buckets in INSTRUMENTS:
        registry = CollectorRegistry()
        reader = PrometheusMetricReader(disable_target_info=True, registry=registry)
        provider = MeterProvider(metric_readers=[reader])
        meter = provider.get_meter("otel_llm_usage", "0.0.0")
        if kind == "histogram":
            instrument = meter.create_histogram(
                name, unit=unit, explicit_bucket_boundaries_advisory=list(buckets) if buckets else None
            )
            record = instrument.record
        elif kind == "counter":
            record = meter.create_counter(name, unit=unit).add
        elif kind == "gauge":
            record = meter.create_gauge(name, unit=unit).set
        else:
            raise AssertionError(f"unknown instrument kind {kind!r} for {name}")
        for variant in ATTRIBUTE_VARIANTS.get(name, [{}]):
            record(1, {**_attributes_for(name), **variant})
        text = generate_latest(registry).decode()
        provider.shutdown()
        names: set[str] = set()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                names.add(sample.name)
                for label, value in sample.labels.items():
                    emitted.labels.add(label)
                    emitted.label_values.setdefault(label, set()).add(value)
                if sample.name.endswith("_bucket"):
                    emitted.le_by_series.setdefault(sample.name, [])
                    if sample.labels["le"] not in emitted.le_by_series[sample.name]:
                        emitted.le_by_series[sample.name].append(sample.labels["le"])
        assert names, f"the exporter produced no series for {name}"
        emitted.series_by_instrument[name] = names
    return emitted


@pytest.fixture(scope="module")
def emitted() -> Emitted:
    return scrape_instruments()


# --- reading the configuration ----------------------------------------------------------------
def load_yaml(relative: str) -> Any:
    return yaml.safe_load((CONFIG / relative).read_text())


def alert_rules() -> list[dict[str, Any]]:
    return [r for g in load_yaml("prometheus/alerts.yml")["groups"] for r in g["rules"]]


def recording_rules() -> list[dict[str, Any]]:
    return [r for g in load_yaml("prometheus/recording.yml")["groups"] for r in g["rules"]]


def dashboard() -> dict[str, Any]:
    board: dict[str, Any] = json.loads((CONFIG / "grafana/dashboards/llm-usage.json").read_text())
    return board


def dashboard_panels() -> Iterator[dict[str, Any]]:
    for panel in dashboard()["panels"]:
        yield panel
        yield from panel.get("panels", [])  # collapsed rows


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable."""
    queries = []
    for panel in dashboard_panels():
        for target in panel.get("targets", []):
            queries.append((f"panel {panel['title']!r} {target['refId']}", target["expr"]))
    for var in dashboard()["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            match = re.fullmatch(r"\s*label_values\((.*),\s*([a-zA-Z_]\w*)\s*\)\s*", query)
            assert match, f"variable {var['name']}: only label_values(selector, label) is supported: {query}"
            # The label the variable lists is queried as a grouping, so the label check covers it.
            queries.append((f"variable ${var['name']}", f"group by ({match.group(2)}) ({match.group(1)})"))
    return queries


def all_queries() -> list[tuple[str, str]]:
    queries = [(f"alert {r['alert']}", r["expr"]) for r in alert_rules()]
    queries += [(f"record {r['record']}", r["expr"]) for r in recording_rules()]
    return queries + dashboard_queries()


# --- a small PromQL reader: enough to find metric and label names ------------------------------
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{([^{}]*)\}")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_TOKEN = re.compile(r"\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[a-zA-Z]*|[a-zA-Z_:][a-zA-Z0-9_:]*|\S")
_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "offset", "bool"}
    | {"inf", "nan", "Inf", "NaN"}
)
_MATCHER_LABEL = re.compile(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)")
_SELECTOR = re.compile(r"([a-zA-Z_:][\w:]*)\s*\{([^{}]*)\}")
_LE_MATCHER = re.compile(r'\ble\s*(=~|=)\s*"((?:[^"\\]|\\.)*)"')
_EQ_MATCHER = re.compile(r'([a-zA-Z_]\w*)\s*=\s*"((?:[^"\\]|\\.)*)"')


def metric_names(expr: str) -> set[str]:
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _RANGE.sub(" ", text)
    tokens = _TOKEN.findall(text)
    names = set()
    for i, token in enumerate(tokens):
        if not re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", token) or token in _KEYWORDS:
            continue
        if i + 1 < len(tokens) and tokens[i + 1] == "(":
            continue  # a function or an aggregation
        names.add(token)
    return names


def label_names(expr: str) -> set[str]:
    text = _STRING.sub('""', expr)
    labels = {m for block in _MATCHERS.findall(text) for m in _MATCHER_LABEL.findall(block)}
    for group in _GROUPING.findall(text):
        labels.update(part.strip() for part in group.split(",") if part.strip())
    return labels


def unescape(promql_string: str) -> str:
    return re.sub(r"\\(.)", r"\1", promql_string)


def test_promql_reader_finds_names_and_labels() -> None:
    expr = (
        'sum by (le, gen_ai_request_model) (rate(a_bucket{x="b{c}", y=~"$v"}[$__rate_interval] offset 15m))'
        " / on (z) group_left sum(b_total) * 3600 > 1e3 or c:d:e unless histogram_quantile(0.5, f_count)"
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "c:d:e", "f_count"}
    assert label_names(expr) == {"le", "gen_ai_request_model", "x", "y", "z"}


# --- files ------------------------------------------------------------------------------------
def test_every_config_file_parses() -> None:
    files = sorted(p for p in CONFIG.rglob("*") if p.suffix in {".yml", ".yaml", ".json"})
    relative = {p.relative_to(CONFIG).as_posix() for p in files}
    assert set(EXPECTED_FILES) <= relative, f"missing: {set(EXPECTED_FILES) - relative}"
    for path in files:
        data = json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())
        assert isinstance(data, dict) and data, f"{path} is empty or not a mapping"


# --- metric and label names -------------------------------------------------------------------
def test_exporter_produces_series_for_every_instrument(emitted: Emitted) -> None:
    for name, kind, _unit, buckets in INSTRUMENTS:
        stem = name.replace(".", "_")
        series = emitted.series_by_instrument[name]
        assert all(s.startswith(stem) for s in series), series
        if kind == "counter":
            assert any(s.endswith("_total") for s in series), series
        elif kind == "gauge":
            assert len(series) == 1 and not series & {f"{stem}_total"}, series
        else:
            assert {s.rsplit("_", 1)[1] for s in series} == {"bucket", "count", "sum"}, series
            (bucket,) = (s for s in series if s.endswith("_bucket"))
            assert len(emitted.le_by_series[bucket]) == len(buckets or ()) + 1  # + "+Inf"


@pytest.mark.parametrize("where,expr", all_queries(), ids=[w for w, _ in all_queries()])
def test_queried_metrics_are_emitted(where: str, expr: str, emitted: Emitted) -> None:
    names = metric_names(expr)
    assert names, f"{where}: no metric name found in {expr!r}"
    recorded = {r["record"] for r in recording_rules()}
    for name in names:
        if ":" in name:
            assert name in recorded, f"{where}: {name} is not defined in prometheus/recording.yml"
        else:
            assert name in emitted.series, f"{where}: {name} is not a series the package emits"


@pytest.mark.parametrize("where,expr", all_queries(), ids=[w for w, _ in all_queries()])
def test_queried_labels_are_emitted(where: str, expr: str, emitted: Emitted) -> None:
    known = emitted.labels | TARGET_LABELS
    for label in label_names(expr):
        assert label in known, f"{where}: label {label} is never emitted (known: {sorted(known)})"
    for label, value in _EQ_MATCHER.findall(expr):
        if label in ENUM_LABELS and not value.startswith("$"):
            assert value in emitted.label_values[label], f"{where}: {label}={value!r} is never emitted"


def _go_float(le: str) -> str:
    """The `le` spelling of Go's strconv (the Collector, Prometheus 3): 1.0 -> "1"."""
    return format(float(le), "g")


LE_QUERIES = [(where, expr) for where, expr in all_queries() if _LE_MATCHER.search(expr)]


def test_le_matchers_are_found() -> None:
    assert {w for w, _ in LE_QUERIES} >= {"alert LLMRunCostOverLimit", "alert LLMSessionCostOverLimit"}


@pytest.mark.parametrize("where,expr", LE_QUERIES, ids=[w for w, _ in LE_QUERIES])
def test_le_matchers_select_exactly_one_bucket_boundary(where: str, expr: str, emitted: Emitted) -> None:
    """A limit that is no bucket boundary, or one spelling of le only, would silently match nothing."""
    found = 0
    for metric, block in _SELECTOR.findall(expr):
        for op, raw in _LE_MATCHER.findall(block):
            found += 1
            pattern = unescape(raw) if op == "=~" else re.escape(unescape(raw))
            boundaries = [le for le in emitted.le_by_series[metric] if le != "+Inf"]
            hits = [le for le in boundaries if any(re.fullmatch(pattern, s) for s in (le, _go_float(le)))]
            assert len(hits) == 1, f"{metric}{{le{op}{raw!r}}} matches boundaries {hits} of {boundaries}"
            (le,) = hits
            for spelling in (le, _go_float(le)):
                assert re.fullmatch(pattern, spelling), (
                    f"{metric}: le matcher {raw!r} misses the spelling {spelling!r}"
                )
    assert found, f"{where}: no le matcher inside a selector"


# --- alert and recording rules ----------------------------------------------------------------
def test_alert_rules_are_complete() -> None:
    rules = alert_rules()
    assert {r["alert"] for r in rules} == EXPECTED_ALERTS
    scopes = {r["labels"].get("scope") for r in rules if r["alert"] == "LLMSpendRateOverBudget"}
    assert scopes == {"overall", "agent"}
    for rule in rules:
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}, rule["alert"]
        annotations = rule["annotations"]
        assert annotations.get("summary") and annotations.get("description"), rule["alert"]
        assert "$value" in annotations["description"], f"{rule['alert']}: description does not show the value"
    agent_budget = next(r for r in rules if r.get("labels", {}).get("scope") == "agent")
    assert "gen_ai_agent_name" in label_names(agent_budget["expr"])


def test_recording_rules_are_named_and_unique() -> None:
    names = [r["record"] for r in recording_rules()]
    assert len(names) == len(set(names))
    for name in names:
        assert re.fullmatch(r"[a-z_]+:[a-z_]+:[a-z0-9_]+", name), f"{name} is not level:metric:operation"
    wanted = [
        {"gen_ai_agent_name"},
        {"gen_ai_provider_name", "gen_ai_request_model"},
        {"tenant_id"},
    ]
    for labels in wanted:
        for projected in (False, True):
            assert any(
                labels <= label_names(r["expr"]) and ("* 730" in r["expr"]) == projected
                for r in recording_rules()
            ), f"no {'monthly projection' if projected else 'hourly spend'} by {sorted(labels)}"


def _rule_tests() -> list[dict[str, Any]]:
    groups = []
    for path in sorted((PROM / "tests").glob("*.yml")):
        groups.extend(yaml.safe_load(path.read_text())["tests"])
    return groups


def test_every_alert_rule_has_a_firing_and_a_silent_case() -> None:
    cases = [case for group in _rule_tests() for case in group.get("alert_rule_test", [])]
    for rule in alert_rules():
        mine = [c for c in cases if c["alertname"] == rule["alert"]]
        assert any(not c.get("exp_alerts") for c in mine), f"{rule['alert']}: no case where it stays silent"
        static = {k: str(v) for k, v in rule.get("labels", {}).items()}
        firing = [
            a
            for c in mine
            for a in c.get("exp_alerts") or []
            if static.items() <= {k: str(v) for k, v in a["exp_labels"].items()}.items()
        ]
        assert firing, f"{rule['alert']} {static}: no case where it fires"


def test_every_recording_rule_is_tested() -> None:
    exprs = [
        case["expr"]
        for group in _rule_tests()
        for case in group.get("promql_expr_test", [])
        if case.get("exp_samples")
    ]
    for rule in recording_rules():
        assert any(rule["record"] in metric_names(e) for e in exprs), (
            f"{rule['record']} has no unit test with samples"
        )


# --- promtool and amtool ----------------------------------------------------------------------
def require_tool(name: str, *, required_in_ci: bool) -> str:
    """The tool's path; a skip when it is missing, or a failure in CI for tools CI installs."""
    path = shutil.which(name)
    if path:
        return path
    package = {"promtool": "prometheus", "amtool": "prometheus-alertmanager"}[name]
    if required_in_ci and os.environ.get("CI", "").lower() not in {"", "0", "false", "no"}:
        pytest.fail(f"{name} is not on PATH but CI is set: CI must install it (apt package {package!r})")
    consequence = "fails instead when CI is set" if required_in_ci else "skipped in CI too"
    pytest.skip(f"{name} is not on PATH; install apt package {package!r} to run this check ({consequence})")


def run(*args: str | Path, cwd: Path = PROM) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_promtool_check_rules() -> None:
    promtool = require_tool("promtool", required_in_ci=True)
    result = run(promtool, "check", "rules", "alerts.yml", "recording.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_config() -> None:
    promtool = require_tool("promtool", required_in_ci=True)
    result = run(promtool, "check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_test_rules() -> None:
    promtool = require_tool("promtool", required_in_ci=True)
    files = sorted(p.relative_to(PROM).as_posix() for p in (PROM / "tests").glob("*.yml"))
    assert files
    result = run(promtool, "test", "rules", *files)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(files), result.stdout


def _mutated_copy(tmp_path: Path, filename: str, index: int, new_expr: str) -> Path:
    """A copy of prometheus/ whose rule number `index` in `filename` has another expression."""
    copy_dir = tmp_path / "prometheus"
    shutil.copytree(PROM, copy_dir)
    doc = yaml.safe_load((PROM / filename).read_text())
    rules = [r for g in doc["groups"] for r in g["rules"]]
    rules[index]["expr"] = new_expr.replace("EXPR", rules[index]["expr"])
    (copy_dir / filename).write_text(yaml.safe_dump(doc, sort_keys=False))
    return copy_dir


@pytest.mark.parametrize("mutation", ["vector(1) > 2", "vector(1)"], ids=["never-fires", "always-fires"])
@pytest.mark.parametrize("index", range(len(alert_rules())), ids=lambda i: f"{alert_rules()[i]['alert']}-{i}")
def test_alert_unit_tests_catch_a_broken_rule(index: int, mutation: str, tmp_path: Path) -> None:
    promtool = require_tool("promtool", required_in_ci=True)
    copy_dir = _mutated_copy(tmp_path, "alerts.yml", index, mutation)
    # Only the test groups about this alert, from every test file, which keeps the run short.
    alert = alert_rules()[index]["alert"]
    suite = yaml.safe_load((PROM / "tests/alerts_test.yml").read_text())
    suite["tests"] = [
        g for g in _rule_tests() if any(c["alertname"] == alert for c in g.get("alert_rule_test", []))
    ]
    assert suite["tests"], f"no test group for {alert}"
    (copy_dir / "tests/mutation_test.yml").write_text(yaml.safe_dump(suite, sort_keys=False))
    result = run(promtool, "test", "rules", "tests/mutation_test.yml", cwd=copy_dir)
    assert result.returncode != 0, f"replacing the expression by {mutation!r} still passes:\n{result.stdout}"


@pytest.mark.parametrize("index", range(len(recording_rules())), ids=lambda i: recording_rules()[i]["record"])
def test_recording_unit_tests_catch_a_broken_rule(index: int, tmp_path: Path) -> None:
    promtool = require_tool("promtool", required_in_ci=True)
    copy_dir = _mutated_copy(tmp_path, "recording.yml", index, "(EXPR) * 1.5")
    result = run(promtool, "test", "rules", "tests/recording_test.yml", cwd=copy_dir)
    assert result.returncode != 0, f"scaling the rule by 1.5 still passes:\n{result.stdout}"


def test_amtool_check_config() -> None:
    amtool = require_tool("amtool", required_in_ci=True)
    result = run(amtool, "check-config", "alertmanager.yml", cwd=CONFIG / "alertmanager")
    assert result.returncode == 0, result.stdout + result.stderr


# --- OpenTelemetry Collector ------------------------------------------------------------------
def collector() -> dict[str, Any]:
    cfg: dict[str, Any] = load_yaml("otel-collector.yaml")
    return cfg


def _port(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


def test_collector_pipelines_reference_defined_components() -> None:
    cfg = collector()
    service = cfg["service"]
    for ext in service.get("extensions", []):
        assert ext in cfg.get("extensions", {}), f"extension {ext} is not defined"
    pipelines = service["pipelines"]
    assert {p.split("/")[0] for p in pipelines} >= {"traces", "metrics"}
    used: dict[str, set[str]] = {"receivers": set(), "processors": set(), "exporters": set()}
    for name, pipeline in pipelines.items():
        assert pipeline.get("receivers") and pipeline.get("exporters"), f"pipeline {name} is incomplete"
        for kind in used:
            for component in pipeline.get(kind, []):
                assert component in (cfg.get(kind) or {}), (
                    f"pipeline {name}: {kind[:-1]} {component} is not defined"
                )
                used[kind].add(component)
    for kind, names in used.items():
        assert set(cfg.get(kind) or {}) == names, f"{kind} defined but never used: {set(cfg[kind]) - names}"


def test_collector_traces_are_tail_sampled_before_batching() -> None:
    cfg = collector()
    traces = cfg["service"]["pipelines"]["traces"]
    processors = traces["processors"]
    assert processors[0] == "memory_limiter"
    assert processors.index("tail_sampling") < processors.index("batch")
    assert any(
        e.split("/")[0] == "otlp" and cfg["exporters"][e]["endpoint"].startswith("jaeger:")
        for e in traces["exporters"]
    )
    assert cfg["service"]["pipelines"]["metrics"]["exporters"] == ["prometheus"]


def test_tail_sampling_keeps_errors_and_expensive_runs() -> None:
    policies = collector()["processors"]["tail_sampling"]["policies"]
    by_type: dict[str, list[dict[str, Any]]] = {}
    for policy in policies:
        by_type.setdefault(policy["type"], []).append(policy)
    assert any("ERROR" in p["status_code"]["status_codes"] for p in by_type.get("status_code", []))
    assert 0 < by_type["probabilistic"][0]["probabilistic"]["sampling_percentage"] < 100
    expensive = [p for p in policies if "llm_usage.run.cost_usd" in json.dumps(p)]
    assert expensive, "no policy looks at llm_usage.run.cost_usd"
    for policy in by_type.get("numeric_attribute", []):
        key = policy["numeric_attribute"]["key"]
        # numeric_attribute compares int64 only; a double attribute always reads as 0.
        assert not key.endswith(("cost_usd", ".cost")), f"numeric_attribute cannot compare the float {key}"
    for policy in by_type.get("ottl_condition", []):
        for condition in policy["ottl_condition"].get("span", []):
            match = re.search(r'attributes\["([^"]+)"\]\s*(>=?)\s*([0-9.]+)', condition)
            assert match and float(match.group(3)) > 0, condition


def test_collector_listens_where_clients_and_prometheus_expect() -> None:
    cfg = collector()
    protocols = cfg["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"] == "0.0.0.0:4317"
    assert protocols["http"]["endpoint"] == "0.0.0.0:4318"
    prom = cfg["exporters"]["prometheus"]
    assert prom["endpoint"] == "0.0.0.0:8889"
    assert prom["resource_to_telemetry_conversion"]["enabled"] is False


# --- docker compose ---------------------------------------------------------------------------
def compose() -> dict[str, Any]:
    cfg: dict[str, Any] = load_yaml("docker-compose.yml")
    return cfg


def _container_ports(service: dict[str, Any]) -> set[int]:
    ports = set()
    for entry in service.get("ports", []) + service.get("expose", []):
        ports.add(int(str(entry).split(":")[-1].split("/")[0]))
    return ports


def _mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> local path, for bind mounts of files in this repository."""
    mounts = {}
    for volume in service.get("volumes", []):
        src, dst = str(volume).split(":")[:2]
        if src.startswith("."):
            mounts[dst] = (CONFIG / src).resolve()
    return mounts


def test_compose_services_and_mounts() -> None:
    services = compose()["services"]
    assert {"otel-collector", "jaeger", "prometheus", "alertmanager", "grafana", "app"} <= set(services)
    assert services["otel-collector"]["image"].startswith("otel/opentelemetry-collector-contrib:")
    assert services["jaeger"]["image"].startswith("jaegertracing/jaeger:")
    for name, service in services.items():
        for dst, src in _mounts(service).items():
            assert src.exists(), f"{name}: mount source of {dst} does not exist: {src}"
        for dependency in service.get("depends_on", []):
            assert dependency in services, f"{name} depends on unknown service {dependency}"


def test_compose_collector_gets_this_config_and_publishes_its_ports() -> None:
    service = compose()["services"]["otel-collector"]
    (config_arg,) = [a for a in service["command"] if a.startswith("--config=")]
    assert _mounts(service)[config_arg.split("=", 1)[1]] == (CONFIG / "otel-collector.yaml").resolve()
    cfg = collector()
    wanted = {_port(p["endpoint"]) for p in cfg["receivers"]["otlp"]["protocols"].values()}
    wanted.add(_port(cfg["exporters"]["prometheus"]["endpoint"]))
    assert wanted <= _container_ports(service)
    jaeger = urlsplit("//" + cfg["exporters"]["otlp/jaeger"]["endpoint"])
    assert jaeger.hostname in compose()["services"]
    assert jaeger.port in _container_ports(compose()["services"][jaeger.hostname])
    assert 16686 in _container_ports(compose()["services"]["jaeger"])


def test_compose_app_sends_otlp_to_the_collector() -> None:
    """The demo runs continuously and sends traces and metrics over OTLP only: one path, no /metrics."""
    app = compose()["services"]["app"]
    command = " ".join(app["command"])
    assert re.search(r"python -m examples\.demo .*--forever", command), command
    interval = re.search(r"--interval (\S+)", command)
    assert interval and 0 < float(interval.group(1)) <= 15, "a modest, steady rate within a scrape interval"
    assert "--metrics otlp" in command
    endpoint = urlsplit(app["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert endpoint.hostname == "otel-collector"
    assert endpoint.port == _port(collector()["receivers"]["otlp"]["protocols"]["http"]["endpoint"])
    assert app["environment"].get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf") == "http/protobuf"
    assert app["environment"]["OTEL_SERVICE_NAME"], "the service name becomes the job label"
    assert not _container_ports(app), "the app serves no /metrics: Prometheus would count its calls twice"
    assert app.get("restart") in {"unless-stopped", "always"}


def test_demo_accepts_the_flags_compose_gives_it() -> None:
    from examples import demo

    app = compose()["services"]["app"]
    command = " ".join(app["command"]).split("python -m examples.demo", 1)[1].split("&&")[0].split()
    parser_error = None
    try:
        demo.main([*command, "--help"])
    except SystemExit as exit_:
        parser_error = exit_.code
    assert parser_error == 0


def test_prometheus_targets_and_rule_files_match_compose() -> None:
    services = compose()["services"]
    cfg = load_yaml("prometheus/prometheus.yml")
    prometheus = services["prometheus"]
    (config_arg,) = [a for a in prometheus["command"] if a.startswith("--config.file=")]
    config_path = config_arg.split("=", 1)[1]
    mounts = _mounts(prometheus)
    assert mounts[config_path] == (PROM / "prometheus.yml").resolve()
    assert cfg["rule_files"]
    for rule_file in cfg["rule_files"]:
        local = (PROM / rule_file).resolve()
        assert local.exists(), f"rule file {rule_file} does not exist"
        in_container = os.path.normpath(os.path.join(os.path.dirname(config_path), rule_file))
        assert mounts.get(in_container) == local, f"{rule_file} is not mounted at {in_container}"
    assert {p.name for p in PROM.glob("*.yml")} - {"prometheus.yml"} == {
        Path(f).name for f in cfg["rule_files"]
    }

    jobs = {job["job_name"]: job for job in cfg["scrape_configs"]}
    collector_port = _port(collector()["exporters"]["prometheus"]["endpoint"])
    targets = {t for job in jobs.values() for sc in job["static_configs"] for t in sc["targets"]}
    assert f"otel-collector:{collector_port}" in targets
    # The app sends over OTLP: scraping it too would count every call twice.
    assert not any(t.startswith("app:") for t in targets), targets
    assert jobs["otel-collector"].get("honor_labels") is True
    for target in targets:
        host, port = target.rsplit(":", 1)
        assert host in services, f"scrape target {target} is not a compose service"
        assert int(port) in _container_ports(services[host]), f"{host} does not expose {port}"

    (am,) = [t for a in cfg["alerting"]["alertmanagers"] for sc in a["static_configs"] for t in sc["targets"]]
    host, port = am.rsplit(":", 1)
    assert host == "alertmanager" and int(port) in _container_ports(services["alertmanager"])


def test_alertmanager_routes_everything_to_a_webhook_in_compose() -> None:
    cfg = load_yaml("alertmanager/alertmanager.yml")
    receivers = {r["name"]: r for r in cfg["receivers"]}
    routes = [cfg["route"], *cfg["route"].get("routes", [])]
    for route in routes:
        assert route["receiver"] in receivers
    services = compose()["services"]
    for receiver in receivers.values():
        for hook in receiver["webhook_configs"]:
            url = urlsplit(hook["url"])
            assert url.hostname in services, f"webhook {hook['url']} is not a compose service"
            assert url.port in _container_ports(services[url.hostname])
    am = services["alertmanager"]
    (config_arg,) = [a for a in am["command"] if a.startswith("--config.file=")]
    assert _mounts(am)[config_arg.split("=", 1)[1]] == (CONFIG / "alertmanager/alertmanager.yml").resolve()


# --- Grafana ----------------------------------------------------------------------------------
def test_grafana_provisioning_matches_compose() -> None:
    services = compose()["services"]
    grafana = _mounts(services["grafana"])
    assert grafana["/etc/grafana/provisioning"] == (CONFIG / "grafana/provisioning").resolve()
    (provider,) = load_yaml("grafana/provisioning/dashboards/dashboards.yml")["providers"]
    assert grafana[provider["options"]["path"]] == (CONFIG / "grafana/dashboards").resolve()
    datasources = load_yaml("grafana/provisioning/datasources/prometheus.yml")["datasources"]
    (prom,) = [d for d in datasources if d["type"] == "prometheus"]
    url = urlsplit(prom["url"])
    assert url.hostname == "prometheus" and url.port in _container_ports(services["prometheus"])
    for ds in datasources:
        host = urlsplit(ds["url"]).hostname
        assert host in services, f"datasource {ds['name']} points at unknown host {host}"


def test_dashboard_datasources_are_consistent() -> None:
    board = dashboard()
    assert board["schemaVersion"] == 39
    assert board["uid"] and board["title"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    ds_var = variables[DS_VARIABLE]
    assert ds_var["type"] == "datasource" and ds_var["query"] == "prometheus"
    provisioned = load_yaml("grafana/provisioning/datasources/prometheus.yml")["datasources"]
    (prom,) = [d for d in provisioned if d["type"] == "prometheus"]
    assert ds_var["current"]["value"] == prom["uid"]
    expected = {"type": "prometheus", "uid": f"${{{DS_VARIABLE}}}"}
    for panel in dashboard_panels():
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == expected, panel["title"]
        assert panel["targets"], f"panel {panel['title']} has no query"
        for target in panel["targets"]:
            assert target["datasource"] == expected, panel["title"]
            for var in re.findall(r"\$(\w+)", target["expr"]):
                assert var.startswith("__") or var in variables, f"{panel['title']}: undefined ${var}"
    for var in variables.values():
        if var["type"] == "query":
            assert var["datasource"] == expected, var["name"]


def test_dashboard_layout() -> None:
    panels = [p for p in dashboard_panels() if p["type"] != "row"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_dashboard_covers_the_required_views(emitted: Emitted) -> None:
    def label(attribute: str) -> str:
        return attribute.replace(".", "_")

    queries = [
        (panel["type"], target["expr"]) for panel in dashboard_panels() for target in panel.get("targets", [])
    ]

    def find(
        series: str,
        *,
        labels: frozenset[str] = frozenset(),
        text: tuple[str, ...] = (),
        panel: str | None = None,
    ) -> bool:
        return any(
            series in metric_names(expr)
            and labels <= label_names(expr)
            and all(t in expr for t in text)
            and (panel is None or kind == panel)
            for kind, expr in queries
        )

    cost = emitted.name("llm_usage.cost", "_total")
    tokens = emitted.name("llm_usage.tokens", "_total")
    model, agent = label("gen_ai.request.model"), label("gen_ai.agent.name")
    views = {
        "spend by model": find(cost, labels=frozenset({model}), text=("3600",)),
        "spend by agent": find(cost, labels=frozenset({agent}), text=("3600",)),
        "tokens by type": find(tokens, labels=frozenset({label("llm_usage.token.type")})),
        "cache-hit ratio": find(tokens, text=('"cache_read"', '"input"', "/")),
        "error rate": find(
            emitted.name("gen_ai.client.operation.duration", "_count"),
            labels=frozenset({label("error.type")}),
        ),
        "unpriced requests": find(emitted.name("llm_usage.requests.unpriced", "_total")),
    }
    for instrument in ("llm_usage.run.cost", "llm_usage.session.cost"):
        bucket = emitted.name(instrument, "_bucket")
        views[f"{instrument} quantiles"] = find(bucket, text=("histogram_quantile(0.95",))
        views[f"{instrument} heatmap"] = find(bucket, panel="heatmap")
    for instrument in ("gen_ai.client.operation.duration", "gen_ai.client.operation.time_to_first_chunk"):
        bucket = emitted.name(instrument, "_bucket")
        views[f"{instrument} p50"] = find(bucket, text=("histogram_quantile(0.5,",))
        views[f"{instrument} p95"] = find(bucket, text=("histogram_quantile(0.95,",))
    missing = [view for view, present in views.items() if not present]
    assert not missing, f"dashboard lacks: {missing}"


def test_mutated_names_are_rejected(emitted: Emitted) -> None:
    """The name checks above must be able to fail: a misspelt unit suffix is not an emitted series."""
    cost = emitted.name("llm_usage.cost", "_total")
    assert cost.replace("_USD", "_usd") not in emitted.series
    assert metric_names(f"rate({cost.replace('_total', '')}[5m])") - emitted.series


# --- images, health checks, exemplars, runbooks, inhibition ------------------------------------
# A release tag: numbers (the echo server releases majors only), optionally a variant (-slim).
_PINNED = re.compile(r"^[\w./-]+:v?\d+(\.\d+)*(-[\w.]+)?$")


def test_every_image_is_pinned_to_a_release() -> None:
    for name, service in compose()["services"].items():
        image = service["image"]
        assert _PINNED.match(image), f"{name}: {image} is not pinned to a release"
        assert not image.endswith((":latest", ":main")), f"{name}: {image} floats"
        if image.startswith("python:"):
            assert re.fullmatch(r"python:3\.12\.\d+-slim", image), f"{name}: {image}"


def _healthy_dependencies(service: dict[str, Any]) -> set[str]:
    depends = service.get("depends_on", {})
    if isinstance(depends, list):
        return set()
    return {name for name, cond in depends.items() if cond.get("condition") == "service_healthy"}


def test_collector_health_check_is_published_and_gates_its_dependants() -> None:
    services = compose()["services"]
    health = collector()["extensions"]["health_check"]
    assert "health_check" in collector()["service"]["extensions"]
    port = _port(health["endpoint"])
    assert port in _container_ports(services["otel-collector"]), "the health endpoint is not published"
    checkers = [
        name
        for name, service in services.items()
        if f"otel-collector:{port}" in " ".join(map(str, service.get("healthcheck", {}).get("test", [])))
    ]
    assert checkers, "no service's healthcheck asks the Collector's health_check endpoint"
    (checker,) = checkers
    assert "otel-collector" in services[checker].get("depends_on", [])
    for dependant in ("prometheus", "app"):
        assert checker in _healthy_dependencies(services[dependant]), (
            f"{dependant} does not wait for the Collector to be healthy"
        )


def test_exemplars_flow_from_the_collector_to_grafana() -> None:
    assert collector()["exporters"]["prometheus"].get("enable_open_metrics") is True
    prometheus = compose()["services"]["prometheus"]
    features = [a.split("=", 1)[1] for a in prometheus["command"] if a.startswith("--enable-feature=")]
    assert any("exemplar-storage" in f.split(",") for f in features), prometheus["command"]
    datasources = load_yaml("grafana/provisioning/datasources/prometheus.yml")["datasources"]
    (prom,) = [d for d in datasources if d["type"] == "prometheus"]
    uids = {d["uid"]: d for d in datasources}
    destinations = prom["jsonData"]["exemplarTraceIdDestinations"]
    assert destinations, "the Prometheus datasource links no exemplars"
    for destination in destinations:
        # The Collector's prometheus exporter labels each exemplar with trace_id.
        assert destination["name"] == "trace_id"
        assert uids[destination["datasourceUid"]]["type"] in {"jaeger", "tempo"}
    with_exemplars = [
        t for p in dashboard_panels() for t in p.get("targets", []) if t.get("exemplar") is True
    ]
    assert with_exemplars, "no dashboard query shows exemplars"
    assert all("_bucket" in t["expr"] for t in with_exemplars), "exemplars live on histogram buckets"


def test_every_alert_links_a_runbook_section_that_exists() -> None:
    from tests.test_docs import anchors

    operations = ROOT / "docs" / "operations.md"
    sections = anchors(operations.read_text())
    for rule in alert_rules():
        url = rule["annotations"].get("runbook_url")
        assert url, f"{rule['alert']} has no runbook_url"
        path, _, anchor = url.partition("#")
        assert (ROOT / path).resolve() == operations.resolve(), f"{rule['alert']}: {url}"
        assert anchor in sections, f"{rule['alert']}: docs/operations.md has no section #{anchor}"


def _matchers(strings: list[str]) -> dict[str, tuple[str, str]]:
    out = {}
    for text in strings:
        match = re.fullmatch(r'\s*(\w+)\s*(=~|!~|!=|=)\s*"(.*)"\s*', text)
        assert match, f"cannot read matcher {text!r}"
        out[match.group(1)] = (match.group(2), match.group(3))
    return out


def _selects(matchers: dict[str, tuple[str, str]], labels: dict[str, str]) -> bool:
    for label, (op, value) in matchers.items():
        actual = labels.get(label, "")
        hit = re.fullmatch(value, actual) is not None if op in {"=~", "!~"} else actual == value
        if hit != (op in {"=", "=~"}):
            return False
    return True


def test_budget_alerts_inhibit_the_lower_severity_spend_warnings() -> None:
    severity_rank = {"info": 0, "warning": 1, "critical": 2}
    rules = [{"alertname": r["alert"], **{k: str(v) for k, v in r["labels"].items()}} for r in alert_rules()]
    (inhibit,) = load_yaml("alertmanager/alertmanager.yml")["inhibit_rules"]
    sources = [r for r in rules if _selects(_matchers(inhibit["source_matchers"]), r)]
    targets = [r for r in rules if _selects(_matchers(inhibit["target_matchers"]), r)]
    assert sources == [
        r for r in rules if r["alertname"] == "LLMSpendRateOverBudget" and r["scope"] == "overall"
    ]
    assert {t["alertname"] for t in targets} == {
        "LLMSpendRateOverBudget",
        "LLMRunCostOverLimit",
        "LLMSessionCostOverLimit",
    }
    (source,) = sources
    for target in targets:
        assert severity_rank[target["severity"]] < severity_rank[source["severity"]], target
    assert source not in targets, "an alert must not inhibit itself"


def test_development_only_choices_are_labelled() -> None:
    text = (CONFIG / "docker-compose.yml").read_text()
    assert "DEVELOPMENT STACK" in text
    services = compose()["services"]
    assert services["grafana"]["environment"]["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    assert "GF_AUTH_DISABLE_LOGIN_FORM" not in services["grafana"]["environment"]
    operations = (ROOT / "docs" / "operations.md").read_text()
    production = operations.split("## From this stack to production", 1)[1]
    for topic in ("TLS", "anonymous", "persistent trace storage", "loadbalancing", "authentication"):
        assert topic in production, f"docs/operations.md says nothing about {topic} for production"


def test_dashboard_filters_by_service_and_agent() -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    job = variables["job"]
    assert job["type"] == "query" and "job)" in job["definition"].replace(" ", "")
    for panel in dashboard_panels():
        for target in panel.get("targets", []):
            expr = target["expr"]
            for metric, block in re.findall(r"([a-zA-Z_:][\w:]*)\s*\{([^{}]*)\}", expr):
                assert 'job=~"$job"' in block, f"{panel['title']}: {metric} ignores $job"
                if "session" not in metric:  # session histograms carry no agent
                    assert 'gen_ai_agent_name=~"$agent"' in block, (
                        f"{panel['title']}: {metric} ignores $agent"
                    )
            assert ":" not in "".join(metric_names(expr)), (
                f"{panel['title']}: a recording rule drops the variables' labels"
            )
