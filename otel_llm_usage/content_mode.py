"""Which content capture the user asked for: OpenTelemetry's GenAI variables, read as util-genai does.

`OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT` takes util-genai's modes (NO_CONTENT,
SPAN_ONLY, EVENT_ONLY, SPAN_AND_EVENT, any case) and, for compatibility, a boolean (true means
SPAN_ONLY). `OTEL_INSTRUMENTATION_GENAI_EMIT_EVENT=true|false`, when set, overrides whether the
event is emitted, as in util-genai. `OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental` is
accepted: this package only ever emits the latest GenAI conventions, so the modes apply with or
without it; an unknown `gen_ai*` value there is warned about.
"""

from __future__ import annotations

from typing import Any

from ._envparse import FALSE_WORDS, TRUE_WORDS, env, warn_once

ENV_CAPTURE = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
ENV_EMIT_EVENT = "OTEL_INSTRUMENTATION_GENAI_EMIT_EVENT"
ENV_STABILITY = "OTEL_SEMCONV_STABILITY_OPT_IN"
GEN_AI_OPT_IN = "gen_ai_latest_experimental"

NO_CONTENT = "NO_CONTENT"
SPAN_ONLY = "SPAN_ONLY"
EVENT_ONLY = "EVENT_ONLY"
SPAN_AND_EVENT = "SPAN_AND_EVENT"
MODES = (NO_CONTENT, SPAN_ONLY, EVENT_ONLY, SPAN_AND_EVENT)
VALID = ", ".join(MODES) + " (or true/false)"


def parse_mode(value: Any) -> str:
    """A capture mode from a mode name or a boolean (True is SPAN_ONLY), or ValueError."""
    if isinstance(value, bool):
        return SPAN_ONLY if value else NO_CONTENT
    if isinstance(value, str):
        word = value.strip()
        if word.upper() in MODES:
            return word.upper()
        if word.lower() in TRUE_WORDS:
            return SPAN_ONLY
        if word.lower() in FALSE_WORDS:
            return NO_CONTENT
    raise ValueError(f"expected one of {VALID}")


def on_spans(mode: str) -> bool:
    return mode in (SPAN_ONLY, SPAN_AND_EVENT)


def events_wanted(mode: str) -> bool:
    """Whether the details event is emitted: EMIT_EVENT when set, else the mode decides."""
    explicit = env(ENV_EMIT_EVENT)
    if explicit is not None:
        word = explicit.strip().lower()
        if word in ("true", "false"):
            return word == "true" and mode != NO_CONTENT
        warn_once(
            ENV_EMIT_EVENT,
            explicit,
            f"{ENV_EMIT_EVENT}={explicit!r} is not valid (expected true or false); "
            "the capture mode decides instead",
        )
    return mode in (EVENT_ONLY, SPAN_AND_EVENT)


def check_stability_opt_in() -> None:
    """Warn about a GenAI value of OTEL_SEMCONV_STABILITY_OPT_IN that is not one we know.

    The variable is shared with other instrumentations (http, database, ...), so only `gen_ai*`
    entries are ours to judge.
    """
    raw = env(ENV_STABILITY)
    if raw is None:
        return
    for item in (part.strip() for part in raw.split(",")):
        if item.lower().startswith("gen_ai") and item.lower() != GEN_AI_OPT_IN:
            warn_once(
                ENV_STABILITY,
                item,
                f"{ENV_STABILITY} contains {item!r}, which is not a GenAI value "
                f"(valid: {GEN_AI_OPT_IN}); the latest GenAI conventions are emitted regardless",
            )
