"""What the current call belongs to: the session, the run (agent) and extra attributes.

Plain contextvars, so the values follow asyncio tasks and `contextvars.copy_context()` into
threads, and leaving a `with` block restores the previous state. A session id that arrived in
W3C baggage (an upstream service's `session()`) is used when no local `session()` is active.

A session id is put into baggage (for the user's own downstream services) only when the user
opts in, and never travels to an LLM provider: requests of instrumented calls are sent in a
context whose baggage has no session or user id (`without_private_baggage`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from opentelemetry import baggage
from opentelemetry.context import Context

from ._guard import warn_once
from .semconv import SESSION_ID, USER_ID

try:  # the baggage's own key: one dict lookup instead of copying the baggage on every call
    from opentelemetry.baggage import _BAGGAGE_KEY as _KEY

    _BAGGAGE_KEY: str | None = _KEY
except ImportError:  # pragma: no cover - a future API without it
    _BAGGAGE_KEY = None

ENV_PROPAGATE_SESSION = "OTEL_LLM_USAGE_PROPAGATE_SESSION"
# Baggage entries that identify a person or a conversation: never sent to an LLM provider.
PRIVATE_BAGGAGE = (SESSION_ID, USER_ID)
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def propagate_session(explicit: bool | None) -> bool:
    """Whether `session()` puts its id into W3C baggage: `explicit`, else the environment (off)."""
    if explicit is not None:
        return explicit
    raw = os.environ.get(ENV_PROPAGATE_SESSION)
    if raw is None:
        return False
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value not in _FALSE:
        warn_once(
            "env.propagate_session",
            "otel-llm-usage: %s=%r is not one of true/false/1/0/yes/no/on/off; session ids stay in "
            "the process (the default)",
            ENV_PROPAGATE_SESSION,
            raw,
        )
    return False


def without_private_baggage(ctx: Context) -> Context:
    """`ctx` without session and user ids in its baggage: the context an LLM request is sent in."""
    entries = ctx.get(_BAGGAGE_KEY) if _BAGGAGE_KEY is not None else baggage.get_all(ctx)
    if entries and isinstance(entries, Mapping):  # no baggage at all: the common case
        for key in PRIVATE_BAGGAGE:
            if key in entries:
                ctx = baggage.remove_baggage(key, ctx)
    return ctx


if TYPE_CHECKING:
    from .rollup.run import Run


@dataclass(frozen=True, slots=True)
class Attribution:
    """What the calls started now belong to: session, user, agent, run and extra attributes.

    Immutable, so a snapshot is free.
    """

    session_id: str | None = None
    user_id: str | None = None
    agent: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    run: Run | None = None


EMPTY_ATTRIBUTION = Attribution()


class AttributionVar:
    """The current `Attribution`. `get` falls back to the baggage's `session.id` when no session
    is set.

    Reading the baggage costs a context lookup, done only when the local attribution has no session.
    """

    __slots__ = ("_var",)

    def __init__(self, name: str) -> None:
        self._var: ContextVar[Attribution] = ContextVar(name, default=EMPTY_ATTRIBUTION)

    def get(self) -> Attribution:
        current = self._var.get()
        if current.session_id is None:
            sid = baggage.get_baggage(SESSION_ID)
            if isinstance(sid, str) and sid:
                return Attribution(sid, current.user_id, current.agent, current.attributes, current.run)
        return current

    def get_local(self) -> Attribution:
        """The attribution set in this process only, without the baggage fallback."""
        return self._var.get()

    def set(self, value: Attribution) -> Token[Attribution]:
        return self._var.set(value)

    def reset(self, token: Token[Attribution]) -> None:
        self._var.reset(token)


current_attribution = AttributionVar("otel_llm_usage_attribution")

# Set while an instrumented call is in progress: a client called by another instrumented client
# (litellm -> openai) records nothing, so each call is counted once, by the outermost library.
in_llm_call: ContextVar[bool] = ContextVar("otel_llm_usage_in_call", default=False)
