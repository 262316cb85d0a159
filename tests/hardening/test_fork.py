"""A forked child never hangs on the package's locks, and counts only its own calls."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def run_script(script: str, timeout: float = 240.0) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONWARNINGS": "ignore::DeprecationWarning"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Thread 0x" not in proc.stderr, proc.stderr  # no child dumped a hung stack
    return proc.stdout


def test_forking_while_threads_record_never_hangs_a_child() -> None:
    # No SDK providers: the children exercise the package's own locks (pricer, counters, ledgers,
    # runs, sessions, the once-per-site log), not the SDK's aggregation locks, which the SDK does
    # not reset.
    out = run_script(
        """
        import faulthandler, os, threading, time
        import otel_llm_usage

        otel_llm_usage.instrument()
        stop = threading.Event()

        def record(worker):
            i = 0
            while not stop.is_set():
                i += 1
                # distinct unpriced models: the pricer's cache, its warning lock and the counters
                otel_llm_usage.record_call(
                    model=f"house-{worker}-{i % 500}", provider="openai", input_tokens=3, output_tokens=2
                )
                # runs, sessions and agents: the rollup's run, session and agent tables
                with otel_llm_usage.session(f"s{worker}-{i % 50}"), otel_llm_usage.run(f"agent-{worker}"):
                    otel_llm_usage.record_call(
                        model="gpt-4o", provider="openai", input_tokens=3, output_tokens=2, agent=f"a{worker}"
                    )

        threads = [threading.Thread(target=record, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        hung = failed = 0
        for _ in range(30):
            pid = os.fork()
            if pid == 0:
                ok = False
                try:
                    faulthandler.dump_traceback_later(20.0)  # where a hung child waits, on stderr
                    before = otel_llm_usage.usage_summary().total.requests
                    with otel_llm_usage.session("child"), otel_llm_usage.run("child-agent"):
                        otel_llm_usage.record_call(
                            model="gpt-4o", provider="openai", input_tokens=1, output_tokens=1, agent="c"
                        )
                    ok = otel_llm_usage.usage_summary().total.requests == before + 1
                finally:
                    os._exit(0 if ok else 1)
            deadline = time.monotonic() + 25.0
            while True:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    failed += os.waitstatus_to_exitcode(status) != 0
                    break
                if time.monotonic() > deadline:
                    hung += 1
                    os.kill(pid, 9)
                    os.waitpid(pid, 0)
                    break
                time.sleep(0.01)  # polling a child process, not synchronising threads
        stop.set()
        for t in threads:
            t.join()
        print(f"hung={hung} failed={failed}")
        """
    )
    assert out.strip() == "hung=0 failed=0"


def test_a_forked_child_counts_only_its_own_calls() -> None:
    out = run_script(
        """
        import os
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        import otel_llm_usage

        reader = InMemoryMetricReader()
        otel_llm_usage.instrument(meter_provider=MeterProvider(metric_readers=[reader]))

        def input_tokens():
            data = reader.get_metrics_data()
            return sum(
                p.value
                for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
                if m.name == "llm_usage.tokens"
                for p in m.data.data_points if p.attributes.get("llm_usage.token.type") == "input"
            )

        for _ in range(3):
            otel_llm_usage.record_call(model="gpt-4o", provider="openai", input_tokens=100, output_tokens=1)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            otel_llm_usage.record_call(model="gpt-4o", provider="openai", input_tokens=7, output_tokens=1)
            os.write(w, str(input_tokens()).encode())
            os._exit(0)
        os.close(w)
        child = os.read(r, 100).decode()
        os.waitpid(pid, 0)
        print(f"parent={input_tokens()} child={child}")
        """,
        timeout=60,
    )
    assert out.strip() == "parent=300 child=7"
