"""Captured content: the semantic conventions' message shape, and each capture mode end to end."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest
from google import genai
from google.genai import types as gtypes
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter as InMemoryLogExporter
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor

from emulators import AnthropicEmulator, AnthropicReply, GeminiEmulator, GeminiReply, Reply
from otel_llm_usage import _envparse
from otel_llm_usage import content as ct
from otel_llm_usage import semconv as sc
from tests.conftest import Telemetry, make_telemetry

# --- pure conversion, one provider shape at a time -----------------------------------------------


def test_openai_chat_messages_with_tool_calls_and_results() -> None:
    messages = [
        {"role": "developer", "content": "Be terse."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather?"},
                {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "rainy"},
    ]
    assert ct.input_messages(messages) == [
        {"role": "system", "parts": [{"type": "text", "content": "Be terse."}]},
        {
            "role": "user",
            "parts": [
                {"type": "text", "content": "Weather?"},
                {"type": "uri", "modality": "image", "uri": "https://x/y.png"},
            ],
        },
        {
            "role": "assistant",
            "parts": [
                {"type": "tool_call", "id": "call_1", "name": "weather", "arguments": {"city": "Paris"}}
            ],
        },
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_1", "response": "rainy"}]},
    ]


def test_openai_responses_input() -> None:
    assert ct.input_messages("Hello") == [{"role": "user", "parts": [{"type": "text", "content": "Hello"}]}]
    items = [
        {"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
        {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
    ]
    assert ct.input_messages(items) == [
        {"role": "user", "parts": [{"type": "text", "content": "Weather?"}]},
        {
            "role": "assistant",
            "parts": [{"type": "tool_call", "id": "c1", "name": "weather", "arguments": {}}],
        },
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "c1", "response": "sunny"}]},
    ]


def test_anthropic_messages() -> None:
    messages = [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "Look it up."},
                {"type": "tool_use", "id": "tu_1", "name": "weather", "input": {"city": "Paris"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "tu_1",
                    "content": [{"type": "text", "text": "rainy"}],
                },
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}},
            ],
        },
    ]
    assert ct.input_messages(messages) == [
        {"role": "system", "parts": [{"type": "text", "content": "Be terse."}]},
        {"role": "user", "parts": [{"type": "text", "content": "Weather?"}]},
        {
            "role": "assistant",
            "parts": [
                {"type": "reasoning", "content": "Look it up."},
                {"type": "tool_call", "id": "tu_1", "name": "weather", "arguments": {"city": "Paris"}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"type": "tool_call_response", "id": "tu_1", "response": "rainy"},
                {"type": "blob", "modality": "image", "mime_type": "image/png", "content": "iVBO"},
            ],
        },
    ]


def test_gemini_contents() -> None:
    assert ct.input_messages(["a", "b"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "a"}, {"type": "text", "content": "b"}]}
    ]
    contents = [
        {"role": "user", "parts": [{"text": "Weather?"}]},
        {
            "role": "model",
            "parts": [{"function_call": {"id": "f1", "name": "weather", "args": {"city": "Paris"}}}],
        },
        {
            "role": "user",
            "parts": [{"function_response": {"id": "f1", "name": "weather", "response": {"sky": "rain"}}}],
        },
        {"role": "user", "parts": [{"inline_data": {"mime_type": "audio/wav", "data": "UklG"}}]},
    ]
    assert ct.input_messages(contents) == [
        {"role": "user", "parts": [{"type": "text", "content": "Weather?"}]},
        {
            "role": "assistant",
            "parts": [{"type": "tool_call", "id": "f1", "name": "weather", "arguments": {"city": "Paris"}}],
        },
        {"role": "user", "parts": [{"type": "tool_call_response", "id": "f1", "response": {"sky": "rain"}}]},
        {
            "role": "user",
            "parts": [{"type": "blob", "modality": "audio", "mime_type": "audio/wav", "content": "UklG"}],
        },
    ]


def test_bedrock_converse_and_unknown_shapes_fall_back_to_text() -> None:
    messages = [
        {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": "w", "input": {}}}]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": "t1", "content": [{"text": "ok"}]}}]},
        {"role": "user", "content": [{"strange": 1}]},
    ]
    assert ct.input_messages(messages) == [
        {"role": "assistant", "parts": [{"type": "tool_call", "id": "t1", "name": "w", "arguments": {}}]},
        {"role": "user", "parts": [{"type": "tool_call_response", "id": "t1", "response": "ok"}]},
        {"role": "user", "parts": [{"type": "text", "content": '{"strange": 1}'}]},
    ]
    assert ct.input_messages({"prompt": "def f():", "suffix": "\n"}) == [
        {"role": "user", "parts": [{"type": "text", "content": '{"prompt": "def f():", "suffix": "\\n"}'}]}
    ]


def test_output_messages_always_carry_a_finish_reason() -> None:
    assert ct.output_messages([{"role": "assistant", "content": "Paris", "finish_reason": "stop"}]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "Paris"}], "finish_reason": "stop"}
    ]
    assert ct.output_messages([{"role": "assistant", "content": "Par"}]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "Par"}], "finish_reason": "unknown"}
    ]


# --- each mode, through real SDKs against the emulators ------------------------------------------


@pytest.fixture
def logs() -> Iterator[InMemoryLogExporter]:
    exporter = InMemoryLogExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    yield exporter
    ct.use_logger_provider(None)


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_envparse, "_warned", set())


def instrumented(monkeypatch: pytest.MonkeyPatch, mode: str, logs: InMemoryLogExporter) -> Telemetry:
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "gen_ai_latest_experimental")
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", mode)
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    return make_telemetry(logger_provider=provider)


def openai_call(emu: Any) -> None:
    emu.push(Reply(text="Paris.", prompt_tokens=10, completion_tokens=2))
    openai.OpenAI(base_url=emu.base_url, api_key="k", max_retries=0).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Capital of France?"}]
    )


EXPECTED_IN = [{"role": "user", "parts": [{"type": "text", "content": "Capital of France?"}]}]
EXPECTED_OUT = [
    {"role": "assistant", "parts": [{"type": "text", "content": "Paris."}], "finish_reason": "stop"}
]

MODES = [
    ("NO_CONTENT", False, False),
    ("SPAN_ONLY", True, False),
    ("EVENT_ONLY", False, True),
    ("SPAN_AND_EVENT", True, True),
]


@pytest.mark.parametrize(("mode", "on_span", "as_event"), MODES)
def test_capture_modes_end_to_end(
    monkeypatch: pytest.MonkeyPatch,
    openai_emulator: Any,
    logs: InMemoryLogExporter,
    mode: str,
    on_span: bool,
    as_event: bool,
) -> None:
    import otel_llm_usage

    t = instrumented(monkeypatch, mode, logs)
    try:
        openai_call(openai_emulator)
    finally:
        otel_llm_usage.uninstrument()
    span = t.one_llm_span()
    a = dict(span.attributes or {})
    if on_span:
        assert json.loads(a[sc.INPUT_MESSAGES]) == EXPECTED_IN
        assert json.loads(a[sc.OUTPUT_MESSAGES]) == EXPECTED_OUT
    else:
        assert sc.INPUT_MESSAGES not in a and sc.OUTPUT_MESSAGES not in a
    events = [r.log_record for r in logs.get_finished_logs()]
    if not as_event:
        assert events == []
        return
    (event,) = events
    assert event.event_name == "gen_ai.client.inference.operation.details"
    assert event.span_id == span.context.span_id and event.trace_id == span.context.trace_id
    assert event.severity_number is not None and event.severity_number.value == 5
    (record,) = logs.get_finished_logs()
    assert (
        record.instrumentation_scope is not None and record.instrumentation_scope.schema_url == sc.SCHEMA_URL
    )
    ea = dict(event.attributes or {})
    assert ea[sc.OPERATION_NAME] == "chat" and ea[sc.REQUEST_MODEL] == "gpt-4o"
    assert ea[sc.USAGE_INPUT_TOKENS] == 10
    assert json.loads(json.dumps(ea[sc.INPUT_MESSAGES], default=list)) == EXPECTED_IN
    assert json.loads(json.dumps(ea[sc.OUTPUT_MESSAGES], default=list)) == EXPECTED_OUT


def test_unknown_mode_warns_and_captures_nothing(
    monkeypatch: pytest.MonkeyPatch,
    openai_emulator: Any,
    logs: InMemoryLogExporter,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import otel_llm_usage

    t = instrumented(monkeypatch, "EVERYTHING", logs)
    try:
        openai_call(openai_emulator)
    finally:
        otel_llm_usage.uninstrument()
    assert sc.INPUT_MESSAGES not in dict(t.one_llm_span().attributes or {})
    assert logs.get_finished_logs() == ()
    (message,) = [r.getMessage() for r in caplog.records if "CAPTURE_MESSAGE_CONTENT" in r.getMessage()]
    assert "'EVERYTHING'" in message and "SPAN_AND_EVENT" in message


def test_anthropic_and_gemini_spans_in_the_conventions_shape(
    monkeypatch: pytest.MonkeyPatch, logs: InMemoryLogExporter
) -> None:
    import otel_llm_usage

    t = instrumented(monkeypatch, "SPAN_ONLY", logs)
    try:
        with AnthropicEmulator() as emu:
            emu.push(AnthropicReply(text="Paris."))
            anthropic.Anthropic(base_url=emu.base_url, api_key="k", max_retries=0).messages.create(
                model="claude-sonnet-4-5",
                max_tokens=50,
                system="Be terse.",
                messages=[{"role": "user", "content": "Capital of France?"}],
            )
        with GeminiEmulator() as gem:
            gem.push(GeminiReply(text="Paris."))
            client = genai.Client(api_key="k", http_options=gtypes.HttpOptions(base_url=gem.base_url))
            client.models.generate_content(model="gemini-2.5-flash", contents="Capital of France?")
    finally:
        otel_llm_usage.uninstrument()
    claude, gemini = sorted(t.llm_spans(), key=lambda s: s.start_time)
    ca, ga = dict(claude.attributes or {}), dict(gemini.attributes or {})
    assert json.loads(ca[sc.INPUT_MESSAGES]) == [
        {"role": "system", "parts": [{"type": "text", "content": "Be terse."}]},
        *EXPECTED_IN,
    ]
    assert json.loads(ca[sc.OUTPUT_MESSAGES])[0]["parts"] == [{"type": "text", "content": "Paris."}]
    assert json.loads(ga[sc.INPUT_MESSAGES]) == EXPECTED_IN
    (out,) = json.loads(ga[sc.OUTPUT_MESSAGES])
    assert out["role"] == "assistant" and out["parts"] == [{"type": "text", "content": "Paris."}]
    assert out["finish_reason"]


# --- tool calls in responses, read from the SDKs' own response types ------------------------------


def test_openai_chat_response_tool_calls() -> None:
    from openai.types.chat import ChatCompletion

    from otel_llm_usage.providers import _openai_read as provider

    response = ChatCompletion.model_validate(
        {
            "id": "c1",
            "object": "chat.completion",
            "created": 0,
            "model": "gpt-4o",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "tool_calls",
                    "message": {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": "call_1",
                                "type": "function",
                                "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                            }
                        ],
                    },
                }
            ],
        }
    )
    result = provider.result_from(response, capture_content=True)
    assert ct.output_messages(result.output_messages, result.finish_reasons) == [
        {
            "role": "assistant",
            "parts": [
                {"type": "tool_call", "id": "call_1", "name": "weather", "arguments": {"city": "Paris"}}
            ],
            "finish_reason": "tool_calls",
        }
    ]


def test_anthropic_response_tool_use_and_thinking() -> None:
    from anthropic.types import Message

    from otel_llm_usage.providers import anthropic as provider

    message = Message.model_validate(
        {
            "id": "m1",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5",
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 10, "output_tokens": 5},
            "content": [
                {"type": "thinking", "thinking": "Look it up.", "signature": "s"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "tu_1", "name": "weather", "input": {"city": "Paris"}},
            ],
        }
    )
    result = provider.result_from(message, capture_content=True)
    assert ct.output_messages(result.output_messages) == [
        {
            "role": "assistant",
            "parts": [
                {"type": "reasoning", "content": "Look it up."},
                {"type": "text", "content": "Checking."},
                {"type": "tool_call", "id": "tu_1", "name": "weather", "arguments": {"city": "Paris"}},
            ],
            "finish_reason": "tool_use",
        }
    ]


def test_openai_responses_api_end_to_end(
    monkeypatch: pytest.MonkeyPatch, openai_emulator: Any, logs: InMemoryLogExporter
) -> None:
    import otel_llm_usage

    t = instrumented(monkeypatch, "SPAN_ONLY", logs)
    try:
        openai_emulator.push(Reply(text="Paris."))
        openai.OpenAI(base_url=openai_emulator.base_url, api_key="k", max_retries=0).responses.create(
            model="gpt-4o", input="Capital of France?"
        )
    finally:
        otel_llm_usage.uninstrument()
    a = dict(t.one_llm_span().attributes or {})
    assert json.loads(a[sc.INPUT_MESSAGES]) == EXPECTED_IN
    (out,) = json.loads(a[sc.OUTPUT_MESSAGES])
    assert out["role"] == "assistant" and out["parts"] == [{"type": "text", "content": "Paris."}]
