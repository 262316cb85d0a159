"""One session served by two worker processes, summed by a real Prometheus.

The first worker makes calls inside `session(S)` and hands the next hop the W3C headers
(`traceparent`, `baggage: session.id=S`) that `opentelemetry.propagate.inject` writes. The second
worker never calls `session()`: it attaches the context extracted from those headers, as an HTTP
server instrumentation would, and the package reads the session id from the baggage. Both
processes label their metrics with `session.id` (`metric_attributes=["session.id"]`), so
Prometheus can add up the whole session across processes; each process also keeps its own ledger
of the session, and the two ledgers must add up to what Prometheus reports.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import (
    Deadline,
    ManagedProcess,
    Prometheus,
    clean_env,
    free_port,
    require_binaries,
    wait_for,
)

BUDGET_S = 60.0
SESSION_ID = "support-7f3a"

WORKER = r'''
"""A worker process serving part of a session; argv: role, metrics port, session id, result path."""

import json
import os
import sys
from pathlib import Path

import openai
from opentelemetry import context, propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otel_llm_usage
from emulators import OpenAIEmulator, Reply

role, port, session_id, result_path = sys.argv[1], int(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
spans = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(spans))
trace.set_tracer_provider(provider)
otel_llm_usage.instrument(prometheus_port=port, metric_attributes=["session.id"])
emulator = OpenAIEmulator().start()
client = openai.OpenAI(base_url=emulator.base_url, api_key="test", max_retries=0)
tracer = trace.get_tracer("worker")


def call(model: str, prompt_tokens: int, completion_tokens: int) -> None:
    emulator.push(Reply(model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens))
    client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])


carrier: dict[str, str] = {}
# A call outside the session in each worker: it must count in the process but not in the session.
call("gpt-4o-mini", 5000, 100)
if role == "first":
    with otel_llm_usage.session(session_id, propagate=True), tracer.start_as_current_span("turn 1"):
        call("gpt-4o", 1200, 300)
        call("gpt-4o", 800, 200)
        propagate.inject(carrier)  # the headers a request to the next worker carries
else:
    incoming = json.loads(os.environ["SESSION_HEADERS"])
    token = context.attach(propagate.extract(incoming))
    try:
        with tracer.start_as_current_span("turn 2"):
            for _ in range(3):
                call("gpt-4o-mini", 3000, 400)
    finally:
        context.detach(token)

own = otel_llm_usage.session_usage(session_id)
summary = otel_llm_usage.usage_summary().to_dict()
result = {
    "headers": carrier,
    "session_cost_usd": own.cost_usd if own is not None else None,
    "session_requests": own.requests if own is not None else None,
    "by_session": {name: row["cost_usd"] for name, row in summary["by_session"].items()},
    "process_cost_usd": summary["total"]["cost_usd"],
    "llm_spans": [
        {
            "trace_id": format(s.context.trace_id, "032x"),
            "conversation_id": (s.attributes or {}).get("gen_ai.conversation.id"),
        }
        for s in spans.get_finished_spans()
        if (s.attributes or {}).get("llm_usage.call")
    ],
}
partial = result_path.with_suffix(".tmp")
partial.write_text(json.dumps(result))
partial.replace(result_path)  # the test sees the whole file or none
sys.stdin.read()  # keep serving /metrics until the test closes stdin
otel_llm_usage.uninstrument()
emulator.stop()
'''


class Worker:
    """A worker subprocess; its result file appears once its calls are done, then it serves /metrics."""

    def __init__(self, workdir: Path, role: str, port: int, env: dict[str, str]) -> None:
        self.role = role
        self.result_path = workdir / f"{role}.json"
        script = workdir / "worker.py"
        if not script.exists():
            script.write_text(WORKER)
        args = [sys.executable, str(script), role, str(port), SESSION_ID, str(self.result_path)]
        self.process = ManagedProcess(f"worker-{role}", args, workdir, env=env, stdin=subprocess.PIPE)

    def result(self, deadline: Deadline) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            if self.result_path.exists():
                result: dict[str, Any] = json.loads(self.result_path.read_text())
                return result
            return None

        return wait_for(
            f"worker {self.role} to finish its calls",
            probe,
            deadline,
            check=self.process.check,
            diagnostics=self.process.log_tail,
        )


@pytest.fixture
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="llm-usage-sessions-") as name:
        yield Path(name)


def test_session_totals_add_up_across_processes(workdir: Path) -> None:
    binaries = require_binaries("prometheus")
    deadline = Deadline(BUDGET_S)
    ports = {"first": free_port(), "second": free_port()}
    processes: list[ManagedProcess] = []
    try:
        prom = Prometheus(
            binaries["prometheus"], workdir, targets={"workers": [f"127.0.0.1:{p}" for p in ports.values()]}
        )
        processes.append(prom.process)
        wait_for("Prometheus /-/ready", prom.ready, deadline, check=prom.process.check)
        first = Worker(workdir, "first", ports["first"], clean_env())
        processes.append(first.process)
        one = first.result(deadline)
        headers = one["headers"]
        assert headers["baggage"] == f"session.id={SESSION_ID}", headers
        assert headers["traceparent"].startswith("00-"), headers

        # The second worker gets the session only through these headers; it never calls session().
        second = Worker(workdir, "second", ports["second"], clean_env(SESSION_HEADERS=json.dumps(headers)))
        processes.append(second.process)
        two = second.result(deadline)

        # Each process holds a ledger for the session, the baggage-joined one included, and the
        # calls made outside the session are in neither.
        for result in (one, two):
            assert result["session_cost_usd"] is not None and result["session_cost_usd"] > 0, result
            assert result["by_session"] == {SESSION_ID: result["session_cost_usd"]}, result
            assert result["process_cost_usd"] > result["session_cost_usd"], result
        assert (one["session_requests"], two["session_requests"]) == (2, 3)
        expected = one["session_cost_usd"] + two["session_cost_usd"]

        # The trace side: the second worker's calls continue the first worker's trace and carry the
        # session as gen_ai.conversation.id, which is what a trace backend is queried by.
        (trace_id,) = {s["trace_id"] for s in one["llm_spans"] if s["conversation_id"] == SESSION_ID}
        joined = [s for s in two["llm_spans"] if s["conversation_id"] == SESSION_ID]
        assert len(joined) == 3 and {s["trace_id"] for s in joined} == {trace_id}, two["llm_spans"]

        # Both workers keep serving until Prometheus holds their final values.
        query = f'sum by (session_id) (llm_usage_cost_USD_total{{session_id="{SESSION_ID}"}})'
        seen: list[object] = []

        def session_total() -> float | None:
            samples = prom.values(query)
            seen[:] = samples
            if len(samples) == 1 and math.isclose(samples[0][1], expected, rel_tol=1e-9, abs_tol=1e-12):
                return samples[0][1]
            return None

        def diagnostics() -> str:
            return f"last seen: {seen!r}, expected {expected!r}\n" + "\n".join(
                p.log_tail() for p in processes
            )

        def check() -> None:
            for process in processes:
                process.check()

        total = wait_for(
            f"Prometheus to sum session {SESSION_ID} over both workers",
            session_total,
            deadline,
            check=check,
            diagnostics=diagnostics,
        )
        assert total > max(one["session_cost_usd"], two["session_cost_usd"])
        # Each worker contributed its own series of the session.
        per_instance = {
            m["instance"]: v
            for m, v in prom.values(
                f'sum by (instance) (llm_usage_cost_USD_total{{session_id="{SESSION_ID}"}})'
            )
        }
        assert per_instance.keys() == {f"127.0.0.1:{p}" for p in ports.values()}, per_instance
        assert math.isclose(
            per_instance[f"127.0.0.1:{ports['second']}"], two["session_cost_usd"], rel_tol=1e-9
        )
    finally:
        for process in reversed(processes):
            process.stop()
