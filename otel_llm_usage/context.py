"""What the current call belongs to: the session, the run (agent) and extra attributes.

Plain contextvars, so the values follow asyncio tasks and `contextvars.copy_context()` into
threads, and leaving a `with` block restores the previous state. A session id that arrived in
W3C baggage (an upstream service's `session()`) is used when no local `session()` is active.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from opentelemetry import baggage

from .semconv import SESSION_ID

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
