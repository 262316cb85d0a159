"""Options from code and from the environment: same meaning; bad code raises, bad environment warns."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

import otel_llm_usage
from otel_llm_usage import _envparse
from otel_llm_usage.budgets import Budget
from otel_llm_usage.config import SPECS, Options
from otel_llm_usage.instrumentor import active_instrumentor
from otel_llm_usage.pricing import ModelPrice

ALL_ENV = [spec.env for spec in SPECS] + [
    "OTEL_INSTRUMENTATION_GENAI_EMIT_EVENT",
    "OTEL_SEMCONV_STABILITY_OPT_IN",
]


def resolve(kwargs: dict[str, Any]) -> Options:
    return Options.resolve(kwargs)


def budget_hook(info: dict[str, Any]) -> None:
    """Named by OTEL_LLM_USAGE_BUDGET_CALLBACK in a test below."""


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ALL_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(_envparse, "_warned", set())  # each test sees its own first warnings


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def resolve_env(monkeypatch: pytest.MonkeyPatch, **env: str) -> Options:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return resolve({})


# --- every option has an environment form, parsed to the same value as the keyword --------------


ENV_AND_CODE: list[tuple[str, str, Any, Any]] = [
    (
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",
        "span_and_event",
        "SPAN_AND_EVENT",
        "SPAN_AND_EVENT",
    ),
    ("OTEL_LLM_USAGE_MAX_CONTENT_LENGTH", "4096", 4096, 4096),
    ("OTEL_LLM_USAGE_STREAM_USAGE", "Always", "always", "always"),
    ("OTEL_LLM_USAGE_PROVIDERS", "openai, anthropic", ["openai", "anthropic"], ("openai", "anthropic")),
    ("OTEL_LLM_USAGE_FRAMEWORKS", "agno", ["agno"], ("agno",)),
    ("OTEL_LLM_USAGE_METRIC_ATTRIBUTES", "tenant,env", ["tenant", "env"], ("tenant", "env")),
    (
        "OTEL_LLM_USAGE_ENDPOINTS",
        "llm.internal=openai",
        {"llm.internal": "openai"},
        {"llm.internal": "openai"},
    ),
    (
        "OTEL_LLM_USAGE_PRICES",
        '{"my-model": {"input": 1, "output": 2}}',
        {"my-model": {"input": 1, "output": 2}},
        {"my-model": ModelPrice(input=1.0, output=2.0)},
    ),
    ("OTEL_LLM_USAGE_ROLLUPS", "off", False, False),
    (
        "OTEL_LLM_USAGE_BUDGETS",
        '[{"scope":"run","max_cost_usd":0.5,"action":"raise"}]',
        [{"scope": "run", "max_cost_usd": 0.5, "action": "raise"}],
        (Budget(0.5, "run", "raise"),),
    ),
    ("OTEL_LLM_USAGE_BUDGET_CALLBACK", "tests.test_config:budget_hook", budget_hook, budget_hook),
    ("OTEL_LLM_USAGE_MAX_SESSIONS", "50", 50, 50),
    ("OTEL_LLM_USAGE_SESSION_IDLE_SECONDS", "0.5", 0.5, 0.5),
    ("OTEL_LLM_USAGE_MAX_CALL_RECORDS", "0", 0, 0),
    ("OTEL_LLM_USAGE_PROMETHEUS_PORT", "9464", 9464, 9464),
    ("OTEL_LLM_USAGE_ANTHROPIC_NATIVE_SPANS", "keep", "keep", "keep"),
    ("OTEL_LLM_USAGE_COEXIST", "Enrich", "enrich", "enrich"),
    ("OTEL_LLM_USAGE_CONSOLE", "on", True, True),
]


def test_the_table_covers_every_option() -> None:
    assert sorted(e for e, *_ in ENV_AND_CODE) == sorted(spec.env for spec in SPECS)


@pytest.mark.parametrize(("env", "raw", "code", "expected"), ENV_AND_CODE, ids=[e for e, *_ in ENV_AND_CODE])
def test_environment_and_keyword_mean_the_same(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    env: str,
    raw: str,
    code: Any,
    expected: Any,
) -> None:
    name = next(spec.name for spec in SPECS if spec.env == env)
    from_env = resolve_env(monkeypatch, **{env: raw})
    assert getattr(from_env, name) == expected
    assert name in from_env.from_env
    monkeypatch.delenv(env)
    from_code = resolve({name: code})
    assert getattr(from_code, name) == expected
    assert name not in from_code.from_env
    assert warnings_of(caplog) == []


def test_keyword_wins_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_LLM_USAGE_MAX_SESSIONS", "50")
    assert resolve({"max_sessions": 7}).max_sessions == 7


def test_budgets_from_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "budgets.json"
    path.write_text(
        json.dumps([{"scope": "session", "max_cost_usd": 2}, {"max_cost_usd": 0.25, "agent": "a"}])
    )
    options = resolve_env(monkeypatch, OTEL_LLM_USAGE_BUDGETS=f"@{path}")
    assert options.budgets == (Budget(2.0, "session"), Budget(0.25, agent="a"))


# --- bad environment values: one warning naming variable, value and valid ones; then the default ----


BAD_ENV = [
    ("OTEL_LLM_USAGE_STREAM_USAGE", "auto", "stream_usage", "always", "'off', 'known', 'always'"),
    ("OTEL_LLM_USAGE_PROVIDERS", "openai,gemini", "providers", None, "google_genai"),
    ("OTEL_LLM_USAGE_FRAMEWORKS", "crewai", "frameworks", None, "openai_agents"),
    ("OTEL_LLM_USAGE_ROLLUPS", "enabled", "rollups", True, "true/false"),
    ("OTEL_LLM_USAGE_MAX_SESSIONS", "lots", "max_sessions", 10_000, "integer"),
    ("OTEL_LLM_USAGE_MAX_SESSIONS", "0", "max_sessions", 10_000, "integer >= 1"),
    ("OTEL_LLM_USAGE_SESSION_IDLE_SECONDS", "soon", "session_idle_seconds", 1800.0, "seconds > 0"),
    ("OTEL_LLM_USAGE_SESSION_IDLE_SECONDS", "nan", "session_idle_seconds", 1800.0, "seconds > 0"),
    ("OTEL_LLM_USAGE_MAX_CALL_RECORDS", "-5", "max_call_records", 1000, "integer >= 0"),
    ("OTEL_LLM_USAGE_PROMETHEUS_PORT", "70000", "prometheus_port", None, "between 1 and 65535"),
    ("OTEL_LLM_USAGE_ENDPOINTS", "llm.internal", "endpoints", {}, "host=provider"),
    ("OTEL_LLM_USAGE_BUDGETS", '{"scope": "run"}', "budgets", (), "max_cost_usd"),
    (
        "OTEL_LLM_USAGE_BUDGETS",
        '[{"max_cost_usd": 1, "action": "panic"}]',
        "budgets",
        (),
        "'warn' or 'raise'",
    ),
    ("OTEL_LLM_USAGE_BUDGETS", "[{", "budgets", (), "invalid JSON"),
    ("OTEL_LLM_USAGE_BUDGETS", "@/no/such/file.json", "budgets", (), "cannot read"),
    ("OTEL_LLM_USAGE_PRICES", '{"m": {"input": 1, "outptu": 2}}', "prices", None, "unknown price field"),
    ("OTEL_LLM_USAGE_BUDGET_CALLBACK", "no_such_module:f", "budget_callback", None, "cannot import"),
    ("OTEL_LLM_USAGE_ANTHROPIC_NATIVE_SPANS", "drop", "anthropic_native_spans", "suppress", "'keep'"),
    (
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",
        "EVERYTHING",
        "capture_content",
        "NO_CONTENT",
        "SPAN_ONLY",
    ),
]


@pytest.mark.parametrize(
    ("env", "raw", "name", "default", "valid"), BAD_ENV, ids=[f"{e}={r}" for e, r, *_ in BAD_ENV]
)
def test_bad_environment_value_warns_once_and_falls_back(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    env: str,
    raw: str,
    name: str,
    default: Any,
    valid: str,
) -> None:
    options = resolve_env(monkeypatch, **{env: raw})
    assert getattr(options, name) == default
    resolve({})  # instrumenting again does not repeat the warning
    (message,) = warnings_of(caplog)
    assert env in message and repr(raw) in message and valid in message and "default" in message


def test_empty_provider_list_warns_and_patches_everything(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    options = resolve_env(monkeypatch, OTEL_LLM_USAGE_PROVIDERS=" ")
    assert options.providers is None
    (message,) = warnings_of(caplog)
    assert "OTEL_LLM_USAGE_PROVIDERS" in message and "empty" in message and "openai" in message


@pytest.mark.parametrize("word", ["true", "1", "YES", "on"])
def test_boolean_words_true(monkeypatch: pytest.MonkeyPatch, word: str) -> None:
    assert resolve_env(monkeypatch, OTEL_LLM_USAGE_ROLLUPS=word).rollups is True


@pytest.mark.parametrize("word", ["false", "0", "No", "OFF"])
def test_boolean_words_false(monkeypatch: pytest.MonkeyPatch, word: str) -> None:
    assert resolve_env(monkeypatch, OTEL_LLM_USAGE_ROLLUPS=word).rollups is False


# --- bad keyword values: ValueError naming the argument ------------------------------------------


BAD_CODE = [
    ("stream_usage", "auto"),
    ("providers", ["openai", "gemini"]),
    ("providers", []),
    ("frameworks", ["crewai"]),
    ("rollups", "enabled"),
    ("max_sessions", "lots"),
    ("max_sessions", True),
    ("session_idle_seconds", -1),
    ("prometheus_port", 0),
    ("endpoints", ["llm.internal"]),
    ("budgets", [{"max_cost_usd": "lots"}]),
    ("prices", {"m": {"input": 1, "outptu": 2}}),
    ("budget_callback", 42),
    ("capture_content", "sometimes"),
    ("anthropic_native_spans", "drop"),
    ("max_content_length", 0),
    ("max_call_records", -1),
]


@pytest.mark.parametrize(("name", "value"), BAD_CODE, ids=[f"{n}={v!r}" for n, v in BAD_CODE])
def test_bad_keyword_raises_value_error_naming_it(name: str, value: Any) -> None:
    with pytest.raises(ValueError, match=rf"instrument\({name}="):
        otel_llm_usage.instrument(**{name: value})
    assert active_instrumentor() is None  # nothing half-installed


def test_unknown_keyword_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="prometheus_prot"):
        resolve({"prometheus_prot": 9464})


# --- content capture modes, as opentelemetry-util-genai reads them --------------------------------


MODES = [
    ("NO_CONTENT", None, False, False),
    ("SPAN_ONLY", None, True, False),
    ("EVENT_ONLY", None, False, True),
    ("SPAN_AND_EVENT", None, True, True),
    ("span_only", None, True, False),
    ("true", None, True, False),
    ("false", None, False, False),
    ("SPAN_ONLY", "true", True, True),
    ("EVENT_ONLY", "false", False, False),
    ("NO_CONTENT", "true", False, False),
]


@pytest.mark.parametrize(("mode", "emit", "on_spans", "events"), MODES)
def test_capture_modes(
    monkeypatch: pytest.MonkeyPatch, mode: str, emit: str | None, on_spans: bool, events: bool
) -> None:
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "http,gen_ai_latest_experimental")
    if emit is not None:
        monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_EMIT_EVENT", emit)
    options = resolve_env(monkeypatch, OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=mode)
    assert (options.content_on_spans, options.content_events) == (on_spans, events)
    assert options.captures_content == (on_spans or events)


def test_capture_content_true_in_code_is_span_only() -> None:
    options = resolve({"capture_content": True})
    assert options.capture_content == "SPAN_ONLY" and options.content_on_spans and not options.content_events


def test_unknown_gen_ai_stability_value_warns(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    resolve_env(monkeypatch, OTEL_SEMCONV_STABILITY_OPT_IN="http/dup,gen_ai_latest")
    (message,) = warnings_of(caplog)
    assert "OTEL_SEMCONV_STABILITY_OPT_IN" in message and "'gen_ai_latest'" in message
    assert "gen_ai_latest_experimental" in message


def test_unknown_emit_event_value_warns(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    options = resolve_env(
        monkeypatch,
        OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="EVENT_ONLY",
        OTEL_INSTRUMENTATION_GENAI_EMIT_EVENT="sometimes",
    )
    assert options.content_events is True  # the mode decides
    (message,) = warnings_of(caplog)
    assert "OTEL_INSTRUMENTATION_GENAI_EMIT_EVENT" in message and "'sometimes'" in message
