"""Options of `instrument()`, each also settable by an environment variable, from one table.

An explicit keyword argument wins over the environment, which wins over the default. A bad keyword
value is the caller's own code: `ValueError` naming the argument. A bad environment value must
never stop the application (nor, under `opentelemetry-instrument`, the instrumentors loaded after
this one): one warning naming the variable, the value and the valid ones, then the default.
docs/configuration.md documents this table; keep the two in step.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from . import content_mode as cm
from . import registry
from ._envparse import (
    env,
    import_object,
    load_json,
    parse_bool,
    parse_choice,
    parse_endpoints,
    parse_int,
    parse_names,
    parse_positive_float,
    warn_once,
)
from .budgets import Budget
from .pricing import ModelPrice

ENV_CAPTURE = cm.ENV_CAPTURE
ENV_MAX_CONTENT = "OTEL_LLM_USAGE_MAX_CONTENT_LENGTH"
ENV_STREAM_USAGE = "OTEL_LLM_USAGE_STREAM_USAGE"
ENV_PROVIDERS = "OTEL_LLM_USAGE_PROVIDERS"
ENV_FRAMEWORKS = "OTEL_LLM_USAGE_FRAMEWORKS"
ENV_METRIC_ATTRIBUTES = "OTEL_LLM_USAGE_METRIC_ATTRIBUTES"
ENV_ENDPOINTS = "OTEL_LLM_USAGE_ENDPOINTS"
ENV_PRICES = "OTEL_LLM_USAGE_PRICES"
ENV_PROMETHEUS_PORT = "OTEL_LLM_USAGE_PROMETHEUS_PORT"
ENV_ROLLUPS = "OTEL_LLM_USAGE_ROLLUPS"
ENV_BUDGETS = "OTEL_LLM_USAGE_BUDGETS"
ENV_BUDGET_CALLBACK = "OTEL_LLM_USAGE_BUDGET_CALLBACK"
ENV_MAX_SESSIONS = "OTEL_LLM_USAGE_MAX_SESSIONS"
ENV_SESSION_IDLE = "OTEL_LLM_USAGE_SESSION_IDLE_SECONDS"
ENV_MAX_CALL_RECORDS = "OTEL_LLM_USAGE_MAX_CALL_RECORDS"
ENV_ANTHROPIC_NATIVE_SPANS = "OTEL_LLM_USAGE_ANTHROPIC_NATIVE_SPANS"
ENV_CONSOLE = "OTEL_LLM_USAGE_CONSOLE"
STREAM_USAGE_MODES = ("off", "known", "always")
ANTHROPIC_NATIVE_SPANS_MODES = ("suppress", "keep")
ENV_COEXIST = "OTEL_LLM_USAGE_COEXIST"
COEXIST_MODES = ("spans", "enrich")
DEFAULT_MAX_CALL_RECORDS = 1000  # per-call entries kept per run and per session


def parse_providers(value: Any) -> tuple[str, ...]:
    """Provider names (checked against the registry by `Options.resolve`, which knows it)."""
    names = parse_names(value)
    if not names:
        raise ValueError("an empty list patches nothing")
    return names


def parse_prices(value: Any) -> Mapping[str, ModelPrice]:
    """model name or glob -> ModelPrice (or a mapping of its fields); JSON or @file in the environment."""
    data = load_json(value) if isinstance(value, str) else value
    if not isinstance(data, Mapping):
        raise ValueError("expected an object of model name or glob -> prices (USD per million tokens)")
    out: dict[str, ModelPrice] = {}
    for name, price in data.items():
        if isinstance(price, ModelPrice):
            out[str(name)] = price
            continue
        if not isinstance(price, Mapping):
            raise ValueError(f"the price of {name!r} must be an object like {{'input': 2.5, 'output': 10}}")
        try:
            out[str(name)] = ModelPrice.from_mapping(price)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"the price of {name!r}: {exc}") from None
    return out


def parse_budgets(value: Any) -> tuple[Budget, ...]:
    """Budgets, or their JSON: `[{"scope": "run", "max_cost_usd": 0.5, "action": "raise"}]` or @file."""
    data = load_json(value) if isinstance(value, str) else value
    if isinstance(data, Budget | Mapping):
        data = [data]
    if not isinstance(data, list | tuple):
        raise ValueError('expected a list of budgets like [{"scope": "run", "max_cost_usd": 0.5}]')
    out: list[Budget] = []
    allowed = {f.name for f in fields(Budget)}
    for item in data:
        if isinstance(item, Budget):
            out.append(item)
            continue
        if not isinstance(item, Mapping) or "max_cost_usd" not in item:
            raise ValueError(
                f"each budget needs max_cost_usd (and optionally {sorted(allowed - {'max_cost_usd'})})"
            )
        unknown = set(item) - allowed
        if unknown:
            raise ValueError(f"unknown budget field(s) {sorted(unknown)}; expected some of {sorted(allowed)}")
        cost = item["max_cost_usd"]
        if isinstance(cost, bool) or not isinstance(cost, int | float):
            raise ValueError(f"max_cost_usd must be a number, not {cost!r}")
        try:
            out.append(Budget(**{str(k): v for k, v in item.items()}))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"budget {dict(item)}: {exc}") from None
    return tuple(out)


def parse_optional_port(value: Any) -> int:
    return parse_int(value, 1, 65535)


@dataclass(frozen=True, slots=True)
class Spec:
    """One option: its keyword, environment variable, parser and default."""

    name: str
    env: str
    parse: Callable[[Any], Any]
    default: Any
    meaning: str = ""  # the default in words, where its value says little ("None", "()")

    def default_text(self) -> str:
        return self.meaning or _describe(self.default)


SPECS: tuple[Spec, ...] = (
    Spec("capture_content", ENV_CAPTURE, cm.parse_mode, cm.NO_CONTENT),
    Spec("max_content_length", ENV_MAX_CONTENT, lambda v: parse_int(v, 1), 16384),
    Spec("stream_usage", ENV_STREAM_USAGE, parse_choice(STREAM_USAGE_MODES), "always"),
    Spec("providers", ENV_PROVIDERS, parse_providers, None, "every installed one"),
    Spec("frameworks", ENV_FRAMEWORKS, parse_names, None, "every installed one"),
    Spec("metric_attributes", ENV_METRIC_ATTRIBUTES, parse_names, (), "none"),
    Spec("endpoints", ENV_ENDPOINTS, parse_endpoints, {}, "none"),
    Spec("prices", ENV_PRICES, parse_prices, None, "the built-in prices"),
    Spec("rollups", ENV_ROLLUPS, parse_bool, True),
    Spec("budgets", ENV_BUDGETS, parse_budgets, (), "no budgets"),
    Spec("budget_callback", ENV_BUDGET_CALLBACK, import_object, None, "none"),
    Spec("max_sessions", ENV_MAX_SESSIONS, lambda v: parse_int(v, 1), 10_000),
    Spec("session_idle_seconds", ENV_SESSION_IDLE, parse_positive_float, 1800.0),
    Spec("max_call_records", ENV_MAX_CALL_RECORDS, parse_int, DEFAULT_MAX_CALL_RECORDS),
    Spec("prometheus_port", ENV_PROMETHEUS_PORT, parse_optional_port, None, "no Prometheus endpoint"),
    Spec(
        "anthropic_native_spans",
        ENV_ANTHROPIC_NATIVE_SPANS,
        parse_choice(ANTHROPIC_NATIVE_SPANS_MODES),
        "suppress",
    ),
    Spec("coexist", ENV_COEXIST, parse_choice(COEXIST_MODES), "spans"),
    Spec("console", ENV_CONSOLE, parse_bool, False),
)
SPEC_BY_NAME = {spec.name: spec for spec in SPECS}


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "…"


def from_env(spec: Spec) -> tuple[Any, bool]:
    """The option's value from its variable and whether it came from there (else the default)."""
    raw = env(spec.env)
    if raw is None:
        return spec.default, False
    try:
        return spec.parse(raw), True
    except ValueError as exc:
        warn_once(
            spec.env,
            raw,
            f"{spec.env}={_describe(raw)} is not valid: {exc}; using the default ({spec.default_text()})",
        )
        return spec.default, False


def _choose(values: dict[str, Any], sourced: set[str], kwargs: Mapping[str, Any]) -> None:
    """Provider and framework names checked against registry.py, each with the right source."""
    for name, variable in (("providers", ENV_PROVIDERS), ("frameworks", ENV_FRAMEWORKS)):
        from_code = kwargs.get(name) is not None
        if values[name] is None and not from_code and variable in os.environ:  # set, but blank
            known = ", ".join(registry.PROVIDERS if name == "providers" else registry.FRAMEWORKS)
            warn_once(
                variable,
                "",
                f"{variable} is set but empty, which would patch nothing; valid: a comma-separated "
                f"list of {known}; patching every installed one",
            )
        if values[name] is None:
            continue
        source = f"{name}=" if from_code else variable
        try:
            if name == "providers":
                registry.choose(values[name], None, source, source)
            else:
                registry.choose(None, values[name], source, source)
        except ValueError as exc:
            problem = str(exc).removeprefix(f"{source}: ")
            if from_code:
                raise ValueError(f"instrument({name}={_describe(list(values[name]))}): {problem}") from None
            raw = os.environ.get(variable, "")
            warn_once(
                variable,
                raw,
                f"{variable}={raw!r} is not valid: {problem}; using the default (every installed one)",
            )
            values[name] = None
            sourced.discard(name)
    values["providers"], values["frameworks"] = registry.choose(
        values["providers"],
        values["frameworks"],
        "providers=" if kwargs.get("providers") is not None else ENV_PROVIDERS,
        "frameworks=" if kwargs.get("frameworks") is not None else ENV_FRAMEWORKS,
    )


@dataclass(frozen=True)
class Options:
    # The content capture mode: NO_CONTENT, SPAN_ONLY, EVENT_ONLY or SPAN_AND_EVENT.
    capture_content: str = cm.NO_CONTENT
    max_content_length: int = 16384
    stream_usage: str = "always"
    providers: tuple[str, ...] | None = None  # None: every provider; names from registry.py
    frameworks: tuple[str, ...] | None = None  # None: every framework
    metric_attributes: tuple[str, ...] = ()
    endpoints: dict[str, str] = field(default_factory=dict)
    prices: Mapping[str, ModelPrice] | None = None
    rollups: bool = True
    budgets: tuple[Budget, ...] = ()
    budget_callback: Any = None
    max_sessions: int = 10_000
    session_idle_seconds: float = 1800.0
    # Per-call entries kept per run and per session (`Run.calls`, `session_calls()`); 0 keeps none.
    max_call_records: int = DEFAULT_MAX_CALL_RECORDS
    prometheus_port: int | None = None
    # The anthropic SDK's own span of a recorded call: "suppress" it (one span per call) or "keep"
    # it as a child of ours.
    anthropic_native_spans: str = "suppress"
    # Beside another GenAI instrumentation of the same client: "spans" (both spans) or "enrich"
    # (our usage and cost on its span, none of ours). See docs/coexistence.md.
    coexist: str = "spans"
    # Development mode: one line per call on stderr and the usage summary table at exit.
    console: bool = False
    # Derived, not options of their own: whether content goes on spans and into events.
    content_on_spans: bool = False
    content_events: bool = False
    # Options whose value came from an environment variable, for messages that must name the source.
    from_env: frozenset[str] = frozenset()

    @property
    def captures_content(self) -> bool:
        return self.content_on_spans or self.content_events

    @classmethod
    def resolve(cls, kwargs: Mapping[str, Any]) -> Options:
        """The options from keyword arguments and the environment."""
        unknown = set(kwargs) - set(SPEC_BY_NAME)
        if unknown:
            raise TypeError(
                f"instrument() got unknown option(s) {sorted(unknown)}; known: {sorted(SPEC_BY_NAME)}"
            )
        values: dict[str, Any] = {}
        sourced: set[str] = set()
        for spec in SPECS:
            given = kwargs.get(spec.name)
            if given is not None:
                try:
                    values[spec.name] = spec.parse(given)
                except ValueError as exc:
                    raise ValueError(f"instrument({spec.name}={_describe(given)}): {exc}") from None
                continue
            values[spec.name], was_env = from_env(spec)
            if was_env:
                sourced.add(spec.name)
        _choose(values, sourced, kwargs)
        cm.check_stability_opt_in()
        mode = values["capture_content"]
        values["endpoints"] = dict(values["endpoints"])
        values["metric_attributes"] = tuple(values["metric_attributes"])
        return cls(
            **values,
            content_on_spans=cm.on_spans(mode),
            content_events=cm.events_wanted(mode),
            from_env=frozenset(sourced),
        )
