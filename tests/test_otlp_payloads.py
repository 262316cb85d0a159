"""What a Collector, Jaeger or Tempo receives: OTLP/HTTP request bodies, decoded with opentelemetry-proto."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import openai
import pytest
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

import otel_llm_usage
from emulators import Reply
from otel_llm_usage import semconv as sc


class _Collector(BaseHTTPRequestHandler):
    bodies: dict[str, list[bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.server.bodies.setdefault(self.path, []).append(body)  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[Any]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    server.bodies = {}  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return tuple(_value(x) for x in v.array_value.values)
    return getattr(v, kind)


def test_collector_receives_llm_spans_run_totals_and_metrics(collector: Any, openai_emulator: Any) -> None:
    from otel_llm_usage.runs import run, session

    endpoint = f"http://127.0.0.1:{collector.server_address[1]}"
    resource = Resource.create({"service.name": "checkout-agent"})
    tp = TracerProvider(resource=resource)
    tp.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces")))
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=f"{endpoint}/v1/metrics"), export_interval_millis=3_600_000
    )
    mp = MeterProvider(resource=resource, metric_readers=[reader])
    otel_llm_usage.instrument(tracer_provider=tp, meter_provider=mp)
    try:
        client = openai.OpenAI(base_url=openai_emulator.base_url, api_key="k", max_retries=0)
        with session("conv-42"), run("planner", agent="planner"):
            for _ in range(2):
                openai_emulator.push(Reply(prompt_tokens=1000, cached_tokens=200, completion_tokens=500))
                client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        assert tp.force_flush() and mp.force_flush()
    finally:
        otel_llm_usage.uninstrument()
        tp.shutdown()
        mp.shutdown()

    spans = {}
    for body in collector.bodies["/v1/traces"]:
        req = ExportTraceServiceRequest.FromString(body)
        for rs in req.resource_spans:
            service = {a.key: _value(a.value) for a in rs.resource.attributes}["service.name"]
            assert service == "checkout-agent"
            for ss in rs.scope_spans:
                for span in ss.spans:
                    spans.setdefault(span.name, []).append({a.key: _value(a.value) for a in span.attributes})
    llm = spans["chat gpt-4o"]
    assert len(llm) == 2
    for a in llm:
        assert a[sc.USAGE_INPUT_TOKENS] == 1000 and a[sc.USAGE_CACHE_READ_INPUT_TOKENS] == 200
        assert a[sc.USAGE_COST] == pytest.approx(0.00725)
        assert a[sc.CONVERSATION_ID] == "conv-42" and a[sc.AGENT_NAME] == "planner"
    (run_attrs,) = spans["invoke_agent planner"]
    assert run_attrs[sc.RUN_REQUESTS] == 2
    assert run_attrs[sc.RUN_INPUT_TOKENS] == 2000 and run_attrs[sc.RUN_CACHE_READ_TOKENS] == 400
    assert run_attrs[sc.RUN_COST_USD] == pytest.approx(0.0145)
    assert run_attrs[sc.SESSION_COST_USD] == pytest.approx(0.0145)
    assert not any(key.startswith("gen_ai.usage.") for key in run_attrs)  # backends would count twice

    metrics: dict[str, Any] = {}
    for body in collector.bodies["/v1/metrics"]:
        req = ExportMetricsServiceRequest.FromString(body)
        for rm in req.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    metrics[m.name] = m
    cost = metrics[sc.METRIC_COST]
    assert cost.unit == "USD" and cost.sum.is_monotonic
    assert sum(p.as_double for p in cost.sum.data_points) == pytest.approx(0.0145)
    duration = metrics[sc.METRIC_OPERATION_DURATION]
    assert duration.unit == "s"
    assert list(duration.histogram.data_points[0].explicit_bounds) == list(sc.DURATION_BUCKETS)
    run_cost = metrics[sc.METRIC_RUN_COST]
    (point,) = run_cost.histogram.data_points
    assert point.count == 1 and point.sum == pytest.approx(0.0145)
    assert list(point.explicit_bounds) == list(sc.COST_BUCKETS)
