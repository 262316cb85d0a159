"""A stream freed by the cycle collector ends its call exactly once, with its usage, and never blocks.

Each scenario runs in a subprocess with a timeout: a finaliser that waits on a lock its own thread
holds hangs the process, which the timeout turns into a failure instead of a hung suite.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import gc, sys, threading, types
    import openai
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import otel_llm_usage
    from emulators import OpenAIEmulator, Reply

    class Ended(SpanProcessor):
        def __init__(self):
            self.event = threading.Event()
        def on_end(self, span):
            if (span.attributes or {}).get("llm_usage.call"):
                self.event.set()

    exporter, ended = InMemorySpanExporter(), Ended()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    tp.add_span_processor(ended)
    mp = MeterProvider(metric_readers=[InMemoryMetricReader()])
    otel_llm_usage.instrument(tracer_provider=tp, meter_provider=mp, stream_usage="off")

    LOCK_TYPES = (type(threading.Lock()), type(threading.RLock()))

    def package_locks():
        # Every lock reachable from the package's modules: whichever of them ending a call takes.
        seen, found, todo = set(), [], [(m, 0) for n, m in list(sys.modules.items())
                                         if n.startswith("otel_llm_usage") and m is not None]
        while todo:
            obj, depth = todo.pop()
            if id(obj) in seen or depth > 6:
                continue
            seen.add(id(obj))
            if isinstance(obj, LOCK_TYPES):
                found.append(obj)
                continue
            if isinstance(obj, types.ModuleType):
                if not obj.__name__.startswith("otel_llm_usage"):
                    continue
                children = list(vars(obj).values())
            elif isinstance(obj, dict):
                children = list(obj.values())
            elif isinstance(obj, (list, tuple, set, frozenset)):
                children = list(obj)
            elif isinstance(obj, (str, bytes, int, float, type, types.FunctionType)) or obj is None:
                continue
            else:
                children = list(getattr(obj, "__dict__", {}).values())
                for cls in type(obj).__mro__:
                    for slot in getattr(cls, "__slots__", ()):
                        if isinstance(slot, str) and hasattr(obj, slot):
                            children.append(getattr(obj, slot))
            todo.extend((c, depth + 1) for c in children)
        return found

    MSGS = [{"role": "user", "content": "hi"}]
    with OpenAIEmulator() as emu:
        client = openai.OpenAI(base_url=emu.base_url, api_key="sk-test", max_retries=0)

        def dropped_stream_in_a_cycle():
            # Every chunk read, usage included (asked for by the caller, so not hidden), but the
            # stream never told it is over: only its finaliser can end the call.
            emu.push(Reply(prompt_tokens=123, completion_tokens=45, chunks=3))
            stream = client.chat.completions.create(
                model="gpt-4o", messages=MSGS, stream=True, stream_options={"include_usage": True}
            )
            chunks = [next(stream) for _ in range(4)]
            assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 123
            box = [stream]
            box.append(box)  # only the cycle collector can free the stream now

        def dropped_raw_response_in_a_cycle():
            # `with_streaming_response` entered and never left: the raw response's finaliser ends it.
            emu.push(Reply(prompt_tokens=7, completion_tokens=3))
            manager = client.chat.completions.with_streaming_response.create(model="gpt-4o", messages=MSGS)
            raw = manager.__enter__()
            box = [raw, manager]
            box.append(box)

        KINDS = [(dropped_stream_in_a_cycle, 123, 45), (dropped_raw_response_in_a_cycle, None, None)]

        # A warm-up call, so that every lock a finish can take exists (ledger rows, sessions, prices).
        dropped_stream_in_a_cycle()
        gc.collect()
        assert ended.event.wait(10)
        locks = package_locks()
        assert locks, "no lock found in the package"

        for lock in locks:
            for drop, input_tokens, output_tokens in KINDS:
                ended.event.clear()
                before = len(exporter.get_finished_spans())
                gc.disable()  # the garbage waits for the collection below
                drop()
                with lock:  # the worst moment: a collection while this thread holds the lock
                    gc.collect()
                gc.enable()
                assert ended.event.wait(10), f"the call of {drop.__name__} never ended"
                spans = exporter.get_finished_spans()[before:]
                calls = [s for s in spans if (s.attributes or {}).get("llm_usage.call")]
                assert len(calls) == 1, len(calls)
                a = dict(calls[0].attributes)
                assert a.get("gen_ai.usage.input_tokens") == input_tokens, a
                assert a.get("gen_ai.usage.output_tokens") == output_tokens, a
                if input_tokens is not None:
                    assert not a.get("llm_usage.stream.incomplete"), a

        # A later call drains whatever is queued too, and no call ever ends twice.
        ended.event.clear()
        dropped_stream_in_a_cycle()
        gc.collect()
        assert ended.event.wait(10)
        spans = [s for s in exporter.get_finished_spans() if (s.attributes or {}).get("llm_usage.call")]
        assert len(spans) == len(locks) * len(KINDS) + 2, (len(spans), len(locks))
        assert len({s.context.span_id for s in spans}) == len(spans)
        print("locks", len(locks))
    """
)


def test_stream_freed_by_the_cycle_collector_while_a_lock_is_held_never_blocks() -> None:
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "locks" in proc.stdout
    assert "Calling end() on an ended span" not in proc.stderr, proc.stderr
