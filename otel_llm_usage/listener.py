"""What the recorder tells the rest of the package about each LLM call: a one-way interface.

The recorder owns its tracer and its spans. Before a call starts it asks each listener (budgets
may refuse the call by raising `BudgetExceeded`; a listener may add attributes, e.g. the run's
session); when the call ends it hands each listener the call as plain data. The rollup is such
a listener; nothing reads a call's numbers back from span attributes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

if TYPE_CHECKING:
    from opentelemetry.trace import SpanContext

    from .recorder import CallRequest
    from .usage import TokenUsage


class EndedCall(NamedTuple):
    """One finished LLM call, as the recorder measured and priced it (a tuple: cheap to make)."""

    model: str  # the requested model, else the response's, else "unknown"
    usage: TokenUsage | None  # None when the provider reported no usage
    cost_usd: float | None  # None when the call could not be priced
    error: bool
    start_ns: int  # wall clock, as on the span
    end_ns: int
    first_output_ns: int | None  # first chunk of a stream, end of a plain call, None if none came
    context_utilization: float | None
    agent: str | None
    session_id: str | None
    attributes: Mapping[str, Any]  # the attributes the call started with (for metric attributes)
    response_model: str | None = None  # the model the response named
    # What a per-call entry (`CallRecord`) shows; defaults for listeners' tests that build one.
    provider: str = ""
    operation: str = ""
    request_model: str | None = None
    response_id: str | None = None
    error_type: str | None = None
    stream: bool = False
    span_context: SpanContext | None = None  # of the call's span (invalid when no SDK tracer)


class CallRefused(RuntimeError):
    """Raised by a listener's `call_starting` to refuse a call (e.g. `BudgetExceeded`): the one
    exception that reaches the caller; any other is logged and ignored."""


class CallListener(Protocol):
    def call_starting(self, req: CallRequest, attributes: dict[str, Any], check_budgets: bool) -> object:
        """Called before a span or request exists. May add to `attributes`; may raise
        `CallRefused` (only when `check_budgets`) to refuse the call. The value returned is
        handed back to `call_ended` for this call."""
        ...

    def call_ended(self, call: EndedCall, state: object) -> None: ...
