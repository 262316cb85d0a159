"""The one place that touches the OpenTelemetry API: spans and metrics of single LLM calls.

Providers describe a call (`CallRequest`) and its outcome (`CallResult`) as plain data; the
recorder turns them into a CLIENT span with semantic-convention attributes and into metrics.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from . import coexist, content
from . import semconv as sc
from ._guard import report
from ._redact import redact
from .call_metrics import CallInstruments
from .context import current_attribution, without_private_baggage
from .listener import CallListener, CallRefused, EndedCall
from .pricing import Cost, Pricer
from .usage import TokenUsage
from .usage_missing import MissingUsageWarnings
from .version import INSTRUMENTATION_NAME, __version__

if TYPE_CHECKING:
    from .config import Options


@dataclass(slots=True)
class CallRequest:
    """What a provider module knows about a call before it is sent."""

    operation: str
    provider: str
    model: str | None
    stream: bool = False
    server_address: str | None = None
    server_port: int | None = None
    attributes: dict[str, Any] | None = None
    input_messages: Any = None  # filled only when content capture is on
    # The model id to price by, whatever the response names: a Bedrock inference profile id carries
    # a price of its own that the bare model name in the response body would lose.
    price_model: str | None = None


@dataclass(slots=True)
class CallResult:
    """What a provider module read from a response (or a finished stream)."""

    response_model: str | None = None
    response_id: str | None = None
    finish_reasons: Sequence[str] | None = None
    usage: TokenUsage | None = None
    provider_cost: float | None = None
    output_messages: Any = None


def error_type(exc: BaseException) -> str:
    return type(exc).__qualname__


class Recorder:
    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None,
        meter_provider: metrics.MeterProvider | None,
        pricer: Pricer,
        options: Options,
    ) -> None:
        self.tracer = trace.get_tracer(
            INSTRUMENTATION_NAME, __version__, tracer_provider, schema_url=sc.SCHEMA_URL
        )
        self.pricer = pricer
        self.options = options  # read on every call: content capture, metric attributes
        self.listeners: tuple[CallListener, ...] = ()
        self.missing_usage = MissingUsageWarnings()
        self.use_meter_provider(meter_provider)

    def use_meter_provider(self, meter_provider: metrics.MeterProvider | None) -> None:
        """Record the per-call metrics on `meter_provider` from now on; the counters' sums carry over."""
        meter = metrics.get_meter(INSTRUMENTATION_NAME, __version__, meter_provider, schema_url=sc.SCHEMA_URL)
        m = CallInstruments(meter, meter_provider, getattr(self, "counters", None))
        # Held here as plain attributes: `LLMCall._finish` reads them on every call.
        self.token_usage = m.token_usage
        self.duration = m.duration
        self.ttfc = m.ttfc
        self.tpoc = m.tpoc
        self.utilization = m.utilization
        self.counters = m.counters

    def add_listener(self, listener: CallListener) -> None:
        self.listeners = (*self.listeners, listener)

    def remove_listener(self, listener: CallListener) -> None:
        self.listeners = tuple(x for x in self.listeners if x is not listener)

    def start(
        self, req: CallRequest, *, start_time_ns: int | None = None, check_budgets: bool = True
    ) -> LLMCall:
        attribution = current_attribution.get()
        attrs: dict[str, Any] = {
            sc.LLM_CALL_MARK: True,
            sc.OPERATION_NAME: req.operation,
            sc.PROVIDER_NAME: req.provider,
            sc.REQUEST_STREAM: req.stream,
        }
        if req.model:
            attrs[sc.REQUEST_MODEL] = req.model
        if req.server_address:
            attrs[sc.SERVER_ADDRESS] = req.server_address
            if req.server_port:
                attrs[sc.SERVER_PORT] = req.server_port
        if req.attributes:
            attrs.update(req.attributes)
        if attribution.session_id is not None:
            attrs[sc.CONVERSATION_ID] = attribution.session_id
            attrs[sc.SESSION_ID] = attribution.session_id
        if attribution.user_id is not None:
            attrs[sc.USER_ID] = attribution.user_id
        if attribution.agent is not None:
            attrs[sc.AGENT_NAME] = attribution.agent
        if attribution.attributes:
            attrs.update(attribution.attributes)
        listened: list[tuple[CallListener, object]] | None = None
        if self.listeners:
            listened = []
            for listener in self.listeners:
                try:
                    listened.append((listener, listener.call_starting(req, attrs, check_budgets)))
                except CallRefused:
                    raise  # a spent budget: before any span or request
                except Exception as exc:
                    report("recorder.call_starting", exc)
        if self.options.content_on_spans and req.input_messages is not None:
            attrs[sc.INPUT_MESSAGES] = content.to_json(
                content.input_messages(req.input_messages), self.options.max_content_length
            )
        start_ns = start_time_ns if start_time_ns is not None else time.time_ns()
        # Another GenAI instrumentation is imported: is its span current (and ours to enrich)?
        span = (
            coexist.current_peer_span(req.provider, self.options.coexist, attrs) if coexist.watching else None
        )
        owned = span is None
        if span is None:
            name = f"{req.operation} {req.model}" if req.model else req.operation
            try:
                span = self.tracer.start_span(
                    name, kind=SpanKind.CLIENT, attributes=attrs, start_time=start_ns
                )
            except Exception as exc:  # a user's sampler or span processor: the call still counts
                report("recorder.start_span", exc)
                span = trace.INVALID_SPAN
        metric_attrs: dict[str, Any] = {sc.OPERATION_NAME: req.operation, sc.PROVIDER_NAME: req.provider}
        if req.model:
            metric_attrs[sc.REQUEST_MODEL] = req.model
        if attribution.agent is not None:
            metric_attrs[sc.AGENT_NAME] = attribution.agent
        for key in self.options.metric_attributes:
            if key in attrs:
                metric_attrs[key] = attrs[key]
        return LLMCall(self, req, span, metric_attrs, start_ns, attrs, listened, owned)


class LLMCall:
    """One call in flight. `finish` and `fail` are idempotent: the span ends exactly once."""

    __slots__ = (
        "_attrs",
        "_ctx_token",
        "_ended",
        "_listened",
        "_mattrs",
        "_rec",
        "chunks",
        "done",
        "end_time_ns",
        "owned",
        "req",
        "span",
        "start_ns",
        "t0",
        "t_first",
        "t_last",
    )

    def __init__(
        self,
        rec: Recorder,
        req: CallRequest,
        span: trace.Span,
        metric_attrs: dict[str, Any],
        start_ns: int,
        attrs: dict[str, Any],
        listened: list[tuple[CallListener, object]] | None,
        owned: bool = True,
    ) -> None:
        self._rec = rec
        self.owned = owned  # else another instrumentation's span (coexist="enrich"), which it ends
        self.req = req
        self.span = span
        self._mattrs = metric_attrs
        self.start_ns = start_ns
        self._attrs = attrs
        self._listened = listened
        self._ended = False
        self.t0 = time.perf_counter()
        self.t_first = 0.0
        self.t_last = 0.0
        self.chunks = 0
        self.done = False
        self._ctx_token: object | None = None
        self.end_time_ns: int | None = None  # set only for calls recorded after the fact

    # The span is current while the request is sent, so HTTP-client spans nest beneath it; the
    # baggage loses its session and user ids, which must not reach the provider.
    def activate(self) -> None:
        self._ctx_token = otel_context.attach(without_private_baggage(trace.set_span_in_context(self.span)))

    def deactivate(self) -> None:
        if self._ctx_token is not None:
            otel_context.detach(self._ctx_token)  # type: ignore[arg-type]
            self._ctx_token = None

    def chunk(self) -> None:
        now = time.perf_counter()
        if not self.chunks:
            self.t_first = now
        self.t_last = now
        self.chunks += 1

    def finish(self, result: CallResult | None, *, incomplete: bool = False) -> None:
        if self.done:
            return
        self.done = True
        try:
            self._finish(result or CallResult(), incomplete, None, "")
        except Exception as exc:  # never let telemetry break the caller
            report("recorder.finish", exc)
            self._end_quietly()

    def fail(self, exc: BaseException | str, result: CallResult | None = None) -> None:
        """End as failed: `exc` is the exception, or an error type name given by the user."""
        if self.done:
            return
        self.done = True
        try:
            if isinstance(exc, str):
                self._finish(result or CallResult(), self.chunks > 0, exc, exc)
            else:
                self._finish(result or CallResult(), self.chunks > 0, error_type(exc), str(exc))
        except Exception as inner:
            report("recorder.fail", inner)
            self._end_quietly()

    def _end_quietly(self) -> None:
        if self._ended or not self.owned:
            return
        self._ended = True
        try:
            self.span.end()
        except Exception:
            pass

    def _finish(self, res: CallResult, incomplete: bool, etype: str | None, message: str) -> None:
        rec, req, span = self._rec, self.req, self.span
        duration = time.perf_counter() - self.t0
        attrs: dict[str, Any] = {}
        mattrs = self._mattrs
        if res.response_model:
            attrs[sc.RESPONSE_MODEL] = res.response_model
            mattrs[sc.RESPONSE_MODEL] = res.response_model
        if res.response_id:
            attrs[sc.RESPONSE_ID] = res.response_id
        if res.finish_reasons:
            attrs[sc.RESPONSE_FINISH_REASONS] = tuple(res.finish_reasons)
        if req.stream:
            attrs[sc.STREAM_CHUNKS] = self.chunks
            if incomplete:
                attrs[sc.STREAM_INCOMPLETE] = True
            if self.chunks:
                attrs[sc.RESPONSE_TIME_TO_FIRST_CHUNK] = self.t_first - self.t0
        if etype is not None:
            attrs[sc.ERROR_TYPE] = etype
            mattrs[sc.ERROR_TYPE] = etype
            if self.owned:
                span.set_status(Status(StatusCode.ERROR, redact(message) or etype))
        usage = res.usage
        cost: Cost | None = None
        window: int | None = None
        utilization = 0.0
        if usage is None:
            attrs[sc.USAGE_SOURCE] = sc.USAGE_SOURCE_MISSING
        else:
            attrs[sc.USAGE_SOURCE] = sc.USAGE_SOURCE_PROVIDER
            attrs[sc.USAGE_INPUT_TOKENS] = usage.input
            attrs[sc.USAGE_OUTPUT_TOKENS] = usage.output
            if usage.cache_read:
                attrs[sc.USAGE_CACHE_READ_INPUT_TOKENS] = usage.cache_read
            if usage.cache_write:
                attrs[sc.USAGE_CACHE_CREATION_INPUT_TOKENS] = usage.cache_write
                if usage.cache_write_1h:
                    attrs[sc.USAGE_CACHE_CREATION_1H_INPUT_TOKENS] = usage.cache_write_1h
            if usage.reasoning:
                attrs[sc.USAGE_REASONING_OUTPUT_TOKENS] = usage.reasoning
            if usage.input_audio:
                attrs[sc.USAGE_AUDIO_INPUT_TOKENS] = usage.input_audio
            if usage.output_audio:
                attrs[sc.USAGE_AUDIO_OUTPUT_TOKENS] = usage.output_audio
            model = req.price_model or res.response_model or req.model
            price = rec.pricer.resolve(req.provider, model, req.server_address) if model else None
            cost = price.cost(usage) if price is not None else None
            window = price.context_window if price is not None else None
            if window:
                utilization = usage.input / window
                attrs[sc.CONTEXT_WINDOW] = window
                attrs[sc.CONTEXT_UTILIZATION] = utilization
            if cost is not None:
                attrs[sc.COST_INPUT_USD] = cost.input_usd
                attrs[sc.COST_CACHE_READ_USD] = cost.cache_read_usd
                attrs[sc.COST_CACHE_WRITE_USD] = cost.cache_write_usd
                attrs[sc.COST_OUTPUT_USD] = cost.output_usd
                if cost.model:
                    attrs[sc.PRICE_MODEL] = cost.model
        total_cost: float | None = None
        if res.provider_cost is not None:
            total_cost = res.provider_cost
            attrs[sc.COST_SOURCE] = sc.COST_SOURCE_PROVIDER
            if cost is not None:
                attrs[sc.COST_PROVIDER_REPORTED_USD] = res.provider_cost
        elif cost is not None:
            total_cost = cost.total_usd
            attrs[sc.COST_SOURCE] = cost.source
        if total_cost is not None:
            attrs[sc.USAGE_COST] = total_cost
        if rec.options.content_on_spans and res.output_messages is not None:
            attrs[sc.OUTPUT_MESSAGES] = content.to_json(
                content.output_messages(res.output_messages, res.finish_reasons),
                rec.options.max_content_length,
            )
        if rec.options.content_events:
            content.emit_event(span, content.event_attributes(req, attrs, res.output_messages))
        span.set_attributes(attrs)
        end_ns = self.end_time_ns or time.time_ns()
        owned = self.owned
        self._ended = True  # a span processor raising in `end` must not make us end it twice
        if owned:
            try:
                span.end(end_time=end_ns)
            except Exception as exc:
                report("recorder.span_end", exc)
        if self._listened:
            self._notify_end(res, usage, total_cost, etype, end_ns, utilization if window else None)
        if owned:  # else the other instrumentation records its own duration and token histograms
            rec.duration.record(duration, mattrs)
        if req.stream and self.chunks:
            rec.ttfc.record(self.t_first - self.t0, mattrs)
            if self.chunks > 1:
                rec.tpoc.record((self.t_last - self.t_first) / (self.chunks - 1), mattrs)
        if usage is not None:
            if owned:
                rec.token_usage.record(usage.input, {**mattrs, sc.TOKEN_TYPE: "input"})
                rec.token_usage.record(usage.output, {**mattrs, sc.TOKEN_TYPE: "output"})
            if window:
                rec.utilization.record(utilization, mattrs)
        if usage is not None or total_cost is not None:
            rec.counters.add(mattrs, usage, total_cost)
        if usage is None and etype is None:
            rec.counters.add_missing(mattrs, req.server_address)
            rec.missing_usage.warn_once(
                req.server_address, req.provider, req.model, stream=req.stream, incomplete=incomplete,
                usage_requested=bool(req.attributes and req.attributes.get(sc.STREAM_USAGE_INJECTED)),
            )  # fmt: skip

    def _notify_end(
        self,
        res: CallResult,
        usage: TokenUsage | None,
        cost: float | None,
        etype: str | None,
        end_ns: int,
        utilization: float | None,
    ) -> None:
        start_ns = self.start_ns
        req = self.req
        error = etype is not None
        if req.stream:
            first = start_ns + int((self.t_first - self.t0) * 1e9) if self.chunks else None
        else:
            first = None if error else end_ns
        attrs = self._attrs
        model = attrs.get(sc.REQUEST_MODEL) or res.response_model or "unknown"
        ended = EndedCall(
            str(model),
            usage,
            cost,
            error,
            start_ns,
            end_ns,
            first,
            utilization,
            attrs.get(sc.AGENT_NAME),
            attrs.get(sc.SESSION_ID) or attrs.get(sc.CONVERSATION_ID),
            attrs,
            res.response_model,
            req.provider,
            req.operation,
            req.model,
            res.response_id,
            etype,
            req.stream,
            self.span.get_span_context(),
        )
        for listener, state in self._listened or ():
            try:
                listener.call_ended(ended, state)
            except Exception as exc:
                report("recorder.call_ended", exc)
