"""`RollupProcessor`: the rollup's view of spans made by other instrumentations.

A span processor on the SDK tracer provider. It records, for every open span, the run it sits in
(from the parent span id), so that an `invoke_agent` span of another instrumentation (a framework's
own agent span) becomes a run whose calls are totalled, and a local root span outside any run
collects the calls beneath it. LLM calls themselves are never counted here: the recorder tells
the rollup about each of its calls directly (`Rollup.call_ended`), so a call counts exactly once,
also when no SDK provider carries this processor or the sampler dropped its span.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor

from .. import semconv as sc
from .._guard import report
from ..context import current_attribution
from .ledgers import MISSING, Rollup
from .reopen import write_after_end
from .run import ROOT, RUN, Run

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import Span as SDKSpan


class RollupProcessor(SpanProcessor):
    """Feeds `rollup.spans` from the SDK's span starts and ends. Inert once `rollup` is None."""

    def __init__(self, rollup: Rollup | None) -> None:
        self.rollup = rollup

    def on_start(self, span: SDKSpan, parent_context: otel_context.Context | None = None) -> None:
        rollup = self.rollup
        if rollup is None or not rollup.enabled:
            return
        try:
            _on_start(rollup, span)
        except Exception as exc:
            report("rollup.on_start", exc)

    def _on_ending(self, span: SDKSpan) -> None:
        rollup = self.rollup
        if rollup is None or not rollup.enabled:
            return
        try:
            # Forgotten here rather than in `on_end`, which a user's processor before this one
            # can keep from being called by raising.
            sid = span.get_span_context().span_id
            run = rollup.spans.pop(sid, None)
            if run is None or run.span_id != sid or run.owned or run.closed:
                return
            start, end = span.start_time, span.end_time
            duration = (end - start) / 1e9 if start is not None and end is not None else None
            rollup.close_run(run, duration, lambda attrs: write_after_end(span, attrs))
        except Exception as exc:
            report("rollup.on_ending", exc)

    def on_end(self, span: ReadableSpan) -> None:
        rollup = self.rollup
        if rollup is None or not rollup.enabled:
            return
        try:
            ctx = span.context
            if ctx is None:
                return
            sid = ctx.span_id
            entry = rollup.spans.pop(sid, MISSING)
            if isinstance(entry, Run) and entry.span_id == sid and not entry.closed:
                start, end = span.start_time, span.end_time
                duration = (end - start) / 1e9 if start is not None and end is not None else None
                rollup.close_run(entry, duration, None)
        except Exception as exc:
            report("rollup.on_end", exc)

    def shutdown(self) -> None:
        rollup = self.rollup
        if rollup is not None:
            rollup.record_held_sessions()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _on_start(rollup: Rollup, span: SDKSpan) -> None:
    sid = span.get_span_context().span_id
    parent = span.parent
    entry: Any = MISSING
    if parent is not None and not parent.is_remote:
        entry = rollup.spans.get(parent.span_id, MISSING)
    attrs = span.attributes or {}
    if attrs.get(sc.LLM_CALL_MARK) is True:
        # The recorder's call (or another's LLM span): counted by the recorder, never here. Noted
        # only so the spans beneath it (an HTTP client's) sit in its run.
        rollup.spans[sid] = entry if entry is not MISSING else current_attribution.get_local().run
        return
    is_run = attrs.get(sc.OPERATION_NAME) == sc.OP_INVOKE_AGENT
    if entry is MISSING:
        entry = None if is_run else Run(span.name, None, run_id="", kind=ROOT, span=span, span_id=sid)
    run: Run | None = entry
    attribution = current_attribution.get()
    session_id = attribution.session_id
    if session_id is None and run is not None:
        session_id = run.session_id
    if is_run:
        own = attrs.get(sc.SESSION_ID) or attrs.get(sc.CONVERSATION_ID)
        if isinstance(own, str) and own:
            session_id = own
        agent = attrs.get(sc.AGENT_NAME)
        if not isinstance(agent, str) or not agent:
            name = span.name
            agent = name[len(sc.OP_INVOKE_AGENT) + 1 :] if name.startswith(sc.OP_INVOKE_AGENT + " ") else name
        parent_run = run if run is not None and run.kind == RUN else None
        run = Run(
            agent,
            agent,
            run_id=f"{sid:016x}",
            session_id=session_id,
            parent=parent_run,
            span=span,
            span_id=sid,
            metric_attrs=rollup.run_metric_attrs(agent, attrs),
        )
        if run.session_id:
            rollup.count_run(run.session_id, attrs)
        rollup.track_run(run)
    rollup.spans[sid] = run
    if session_id and sc.SESSION_ID not in attrs:
        extra: dict[str, Any] = {sc.SESSION_ID: session_id}
        if is_run:
            extra[sc.CONVERSATION_ID] = session_id
        if attribution.user_id is not None and sc.USER_ID not in attrs:
            extra[sc.USER_ID] = attribution.user_id
        span.set_attributes(extra)
