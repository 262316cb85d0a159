"""The demo as the Compose stack runs it: continuously, with traces and metrics over OTLP only.

The demo sends to a loopback OTLP/HTTP receiver; the request bodies are decoded with
opentelemetry-proto. Histogram points must carry exemplars whose trace ids are those of the LLM
call spans sent alongside: that is what lets Grafana jump from a latency or cost bucket to the trace.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otel_llm_usage import semconv as sc
from tests.test_otlp_payloads import _Collector, _value

ROOT = Path(__file__).resolve().parents[1]
ROUNDS = 3
TIMEOUT_S = 180


@pytest.fixture
def receiver() -> Iterator[Any]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    server.bodies = {}  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def run_demo_forever(endpoint: str) -> str:
    """Starts the demo with --forever, stops it with Ctrl-C once it has begun round ROUNDS."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_") and k != "OPENAI_API_KEY"}
    env.update(
        OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
        OTEL_SERVICE_NAME="demo-under-test",
        OTEL_METRIC_EXPORT_INTERVAL="500",
        PYTHONUNBUFFERED="1",
    )
    command = [sys.executable, "-m", "examples.demo", "--forever", "--interval", "0.05", "--metrics", "otlp"]
    proc = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    watchdog = threading.Timer(TIMEOUT_S, proc.kill)
    watchdog.start()
    lines = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith(f"session support-alice-{ROUNDS} "):
                proc.send_signal(signal.SIGINT)
                break
        out, err = proc.communicate(timeout=TIMEOUT_S)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err[-3000:]
    return "".join(lines) + out


def test_demo_forever_sends_metrics_with_exemplars_over_otlp_only(receiver: Any) -> None:
    out = run_demo_forever(f"http://127.0.0.1:{receiver.server_address[1]}")
    assert f"session support-alice-{ROUNDS} " in out
    assert "Prometheus metrics at" not in out, "with --metrics otlp the demo must not serve /metrics too"

    call_spans: dict[bytes, set[bytes]] = {}  # trace id -> span ids of LLM call spans
    for body in receiver.bodies["/v1/traces"]:
        for rs in ExportTraceServiceRequest.FromString(body).resource_spans:
            for ss in rs.scope_spans:
                for span in ss.spans:
                    attributes = {a.key: _value(a.value) for a in span.attributes}
                    if attributes.get("llm_usage.call"):
                        call_spans.setdefault(span.trace_id, set()).add(span.span_id)
    assert len(call_spans) >= ROUNDS, "the demo's LLM calls should be traced"

    exemplars: list[Any] = []
    services = set()
    cost = 0.0
    for body in receiver.bodies["/v1/metrics"]:
        for rm in ExportMetricsServiceRequest.FromString(body).resource_metrics:
            services.add({a.key: _value(a.value) for a in rm.resource.attributes}["service.name"])
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == sc.METRIC_OPERATION_DURATION:
                        exemplars += [e for p in metric.histogram.data_points for e in p.exemplars]
                    if metric.name == sc.METRIC_COST:
                        cost = max(cost, sum(p.as_double for p in metric.sum.data_points))
    assert services == {"demo-under-test"}  # the Collector's exporter makes this the job label
    assert cost > 0
    assert exemplars, "histogram points carry no exemplars"
    for exemplar in exemplars:
        assert len(exemplar.trace_id) == 16 and any(exemplar.trace_id)
        assert len(exemplar.span_id) == 8 and any(exemplar.span_id)
    # The duration is recorded while the call's own span is current: the exemplar names that span.
    linked = [e for e in exemplars if e.span_id in call_spans.get(e.trace_id, set())]
    assert linked, "no exemplar points at the span of an LLM call the demo sent"
