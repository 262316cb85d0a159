"""Options of `instrument()`, each also settable by an environment variable.

An explicit keyword argument wins over the environment, which wins over the default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import registry
from .budgets import Budget
from .pricing import ModelPrice

ENV_CAPTURE = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
ENV_MAX_CONTENT = "OTEL_LLM_USAGE_MAX_CONTENT_LENGTH"
ENV_STREAM_USAGE = "OTEL_LLM_USAGE_STREAM_USAGE"
ENV_PROVIDERS = "OTEL_LLM_USAGE_PROVIDERS"
ENV_FRAMEWORKS = "OTEL_LLM_USAGE_FRAMEWORKS"
ENV_METRIC_ATTRIBUTES = "OTEL_LLM_USAGE_METRIC_ATTRIBUTES"
ENV_ENDPOINTS = "OTEL_LLM_USAGE_ENDPOINTS"
ENV_PROMETHEUS_PORT = "OTEL_LLM_USAGE_PROMETHEUS_PORT"
ENV_ROLLUPS = "OTEL_LLM_USAGE_ROLLUPS"
ENV_MAX_SESSIONS = "OTEL_LLM_USAGE_MAX_SESSIONS"
ENV_SESSION_IDLE = "OTEL_LLM_USAGE_SESSION_IDLE_SECONDS"
ENV_ANTHROPIC_NATIVE_SPANS = "OTEL_LLM_USAGE_ANTHROPIC_NATIVE_SPANS"
ENV_CONSOLE = "OTEL_LLM_USAGE_CONSOLE"
ANTHROPIC_NATIVE_SPANS_MODES = ("suppress", "keep")


def _env_bool(name: str) -> bool | None:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip().lower() in ("1", "true", "yes", "on")


def _env_list(name: str) -> list[str] | None:
    value = os.environ.get(name)
    if value is None:
        return None
    return [item.strip() for item in value.split(",") if item.strip()]


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value and value.strip() else None


@dataclass(frozen=True)
class Options:
    capture_content: bool = False
    max_content_length: int = 16384
    stream_usage: str = "always"
    providers: tuple[str, ...] | None = None  # None: every provider; names from registry.py
    frameworks: tuple[str, ...] | None = None  # None: every framework
    metric_attributes: tuple[str, ...] = ()
    endpoints: dict[str, str] = field(default_factory=dict)
    prices: Mapping[str, ModelPrice | Mapping[str, Any]] | None = None
    rollups: bool = True
    budgets: tuple[Budget, ...] = ()
    budget_callback: Any = None
    max_sessions: int = 10_000
    session_idle_seconds: float = 1800.0
    prometheus_port: int | None = None
    # The anthropic SDK's own span of a recorded call: "suppress" it (one span per call) or "keep"
    # it as a child of ours.
    anthropic_native_spans: str = "suppress"
    # Development mode: one line per call on stderr and the usage summary table at exit.
    console: bool = False

    @classmethod
    def resolve(cls, kwargs: dict[str, Any]) -> Options:
        unknown = set(kwargs) - set(cls.__dataclass_fields__)
        if unknown:
            raise TypeError(f"instrument() got unknown option(s) {sorted(unknown)}")

        def pick(name: str, env: Any) -> Any:
            if kwargs.get(name) is not None:
                return kwargs[name]
            if env is not None:
                return env
            f = cls.__dataclass_fields__[name]
            return f.default_factory() if callable(f.default_factory) else f.default

        endpoints_env = None
        if os.environ.get(ENV_ENDPOINTS):
            endpoints_env = dict(
                item.split("=", 1) for item in os.environ[ENV_ENDPOINTS].split(",") if "=" in item
            )
        providers, frameworks = registry.choose(
            pick("providers", _env_list(ENV_PROVIDERS)),
            pick("frameworks", _env_list(ENV_FRAMEWORKS)),
            "providers=" if kwargs.get("providers") is not None else ENV_PROVIDERS,
            "frameworks=" if kwargs.get("frameworks") is not None else ENV_FRAMEWORKS,
        )
        stream_usage = pick("stream_usage", os.environ.get(ENV_STREAM_USAGE))
        if stream_usage not in ("off", "known", "always"):
            raise ValueError(f"stream_usage must be 'off', 'known' or 'always', not {stream_usage!r}")
        metric_attributes: Sequence[str] = pick("metric_attributes", _env_list(ENV_METRIC_ATTRIBUTES))
        native_spans = pick("anthropic_native_spans", os.environ.get(ENV_ANTHROPIC_NATIVE_SPANS))
        if native_spans not in ANTHROPIC_NATIVE_SPANS_MODES:
            raise ValueError(f"anthropic_native_spans must be 'suppress' or 'keep', not {native_spans!r}")
        return cls(
            capture_content=bool(pick("capture_content", _env_bool(ENV_CAPTURE))),
            max_content_length=int(pick("max_content_length", _env_int(ENV_MAX_CONTENT))),
            stream_usage=stream_usage,
            providers=providers,
            frameworks=frameworks,
            metric_attributes=tuple(metric_attributes),
            endpoints=dict(pick("endpoints", endpoints_env) or {}),
            prices=kwargs.get("prices"),
            rollups=bool(pick("rollups", _env_bool(ENV_ROLLUPS))),
            budgets=tuple(kwargs.get("budgets") or ()),
            budget_callback=kwargs.get("budget_callback"),
            max_sessions=int(pick("max_sessions", _env_int(ENV_MAX_SESSIONS))),
            session_idle_seconds=float(pick("session_idle_seconds", _env_int(ENV_SESSION_IDLE))),
            prometheus_port=pick("prometheus_port", _env_int(ENV_PROMETHEUS_PORT)),
            anthropic_native_spans=native_spans,
            console=bool(pick("console", _env_bool(ENV_CONSOLE))),
        )
