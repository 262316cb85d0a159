"""Per-call entries of a run or a session: `CallRecord`, and the bounded buffer that keeps them.

A record is made once per call (only when the call sits in a run or a session) and shared by every
run above the call and by its session. Each buffer keeps the newest `cap` records and counts the
ones it dropped, so memory stays bounded however long a session lives.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, NamedTuple

from ..usage import TokenUsage

if TYPE_CHECKING:
    from opentelemetry.trace import SpanContext

    from ..listener import EndedCall


class CallRecord(NamedTuple):
    """One LLM call of a run or a session, as it was measured and priced.

    Times are wall-clock nanoseconds, as on the call's span. `cost_usd` is None when the call could
    not be priced; `usage` is None when the provider reported none.
    """

    provider: str
    operation: str
    request_model: str | None
    response_model: str | None
    agent: str | None
    session_id: str | None
    usage: TokenUsage | None
    cost_usd: float | None
    start_time_ns: int
    end_time_ns: int
    first_chunk_time_ns: int | None  # streams only: when the first chunk arrived
    error_type: str | None
    response_id: str | None
    span_context: SpanContext | None

    @property
    def model(self) -> str | None:
        """The model that answered, else the one asked for."""
        return self.response_model or self.request_model

    @property
    def duration_s(self) -> float:
        return max(self.end_time_ns - self.start_time_ns, 0) / 1e9

    @property
    def time_to_first_chunk_s(self) -> float | None:
        first = self.first_chunk_time_ns
        return max(first - self.start_time_ns, 0) / 1e9 if first is not None else None

    @property
    def trace_id(self) -> str | None:
        """The call span's trace id (32 hex digits), None without a valid span."""
        ctx = self.span_context
        return format(ctx.trace_id, "032x") if ctx is not None and ctx.is_valid else None

    @property
    def span_id(self) -> str | None:
        """The call span's id (16 hex digits), None without a valid span."""
        ctx = self.span_context
        return format(ctx.span_id, "016x") if ctx is not None and ctx.is_valid else None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data: token counts by type, seconds, hex ids."""
        u = self.usage
        return {
            "provider": self.provider,
            "operation": self.operation,
            "request_model": self.request_model,
            "response_model": self.response_model,
            "agent": self.agent,
            "session_id": self.session_id,
            "usage": u._asdict() if u is not None else None,
            "cost_usd": self.cost_usd,
            "start_time_ns": self.start_time_ns,
            "duration_s": self.duration_s,
            "time_to_first_chunk_s": self.time_to_first_chunk_s,
            "error_type": self.error_type,
            "response_id": self.response_id,
            "trace_id": self.trace_id,
            "span_id": self.span_id,
        }


def record_of(call: EndedCall, agent: str | None, session_id: str | None) -> CallRecord:
    """The entry of a finished call; `agent` and `session_id` as the rollup attributed them."""
    return CallRecord(
        call.provider,
        call.operation,
        call.request_model,
        call.response_model,
        agent,
        session_id,
        call.usage,
        call.cost_usd,
        call.start_ns,
        call.end_ns,
        call.first_output_ns if call.stream else None,
        call.error_type,
        call.response_id,
        call.span_context,
    )


class CallLog(tuple[CallRecord, ...]):
    """The per-call entries of a run or a session, oldest first: a tuple, plus `dropped`, the
    number of older entries no longer kept (beyond the cap, `max_call_records`)."""

    dropped: int

    def __new__(cls, records: tuple[CallRecord, ...] | list[CallRecord] = (), dropped: int = 0) -> CallLog:
        self = super().__new__(cls, records)
        self.dropped = dropped
        return self

    def __repr__(self) -> str:
        return f"CallLog({len(self)} calls, dropped={self.dropped})"


class CallBuffer:
    """The newest `cap` records of one run or session. Not locked: its owner's lock guards it."""

    __slots__ = ("dropped", "records")

    def __init__(self, cap: int) -> None:
        self.records: deque[CallRecord] = deque(maxlen=cap)
        self.dropped = 0

    def append(self, record: CallRecord) -> None:
        records = self.records
        if len(records) == records.maxlen:
            self.dropped += 1
        records.append(record)

    def log(self) -> CallLog:
        return CallLog(tuple(self.records), self.dropped)
