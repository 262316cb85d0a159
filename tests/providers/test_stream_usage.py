"""Usage from every OpenAI-compatible stream: asked of any endpoint by default, the usage chunk
hidden, a refusal of `stream_options` answered by one transparent resend, and the endpoint
remembered. Driven by the openai SDK over loopback HTTP against the OpenAI emulator in each of its
`stream_options` modes (accept, ignore, reject with 400, reject with 422)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from opentelemetry.trace import StatusCode

import otel_llm_usage
from emulators import OpenAIEmulator, Reply
from otel_llm_usage import semconv as sc
from otel_llm_usage.providers._stream_usage import RefusingEndpoints, refuses_stream_options

MSGS = [{"role": "user", "content": "What is the capital of France?"}]
API_KEY = "sk-test-secret-key-0123456789"
REPLY = Reply(
    prompt_tokens=1000, cached_tokens=200, completion_tokens=500, chunks=4, id="chatcmpl-fixed", created=1
)


@pytest.fixture(params=["reject", "reject_422"])
def refusing(request: pytest.FixtureRequest) -> Iterator[OpenAIEmulator]:
    with OpenAIEmulator(stream_options=request.param) as emu:
        yield emu


@pytest.fixture
def ignoring() -> Iterator[OpenAIEmulator]:
    with OpenAIEmulator(stream_options="ignore") as emu:
        yield emu


def client(emu: OpenAIEmulator) -> openai.OpenAI:
    return openai.OpenAI(base_url=emu.base_url, api_key=API_KEY, max_retries=0)


def aclient(emu: OpenAIEmulator) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=emu.base_url, api_key=API_KEY, max_retries=0)


def stream(emu: OpenAIEmulator, **kw: Any) -> list[str]:
    """The caller's view of a stream: every chunk as JSON, as `to_json()` gives it."""
    chunks = client(emu).chat.completions.create(model="gpt-4o", messages=MSGS, stream=True, **kw)
    return [chunk.to_json(indent=None) for chunk in chunks]


async def astream(emu: OpenAIEmulator, **kw: Any) -> list[str]:
    chunks = await aclient(emu).chat.completions.create(model="gpt-4o", messages=MSGS, stream=True, **kw)
    return [chunk.to_json(indent=None) async for chunk in chunks]


def attrs(span: Any) -> dict[str, Any]:
    return dict(span.attributes or {})


def sent_stream_options(emu: OpenAIEmulator) -> list[Any]:
    return [r.json.get("stream_options") for r in emu.requests if r.path.endswith("/chat/completions")]


# --- any endpoint, by default --------------------------------------------------------------------


def test_default_asks_a_loopback_endpoint_and_the_caller_sees_the_uninstrumented_chunks(
    instrument_with: Any, openai_emulator: OpenAIEmulator
) -> None:
    openai_emulator.push(REPLY)
    plain = stream(openai_emulator)
    assert sent_stream_options(openai_emulator) == [None]

    t = instrument_with()
    openai_emulator.push(REPLY)
    seen = stream(openai_emulator)

    assert sent_stream_options(openai_emulator)[-1] == {"include_usage": True}
    assert seen == plain  # the usage chunk and every `"usage": null` stay out of the caller's view
    served = openai_emulator.served
    a = attrs(t.one_llm_span())
    assert a[sc.STREAM_USAGE_INJECTED] is True
    assert sc.STREAM_USAGE_RETRIED not in a
    assert a[sc.USAGE_SOURCE] == "provider"
    assert a[sc.USAGE_INPUT_TOKENS] == served.prompt_tokens == 1000
    assert a[sc.USAGE_OUTPUT_TOKENS] == served.completion_tokens == 500
    assert a[sc.USAGE_CACHE_READ_INPUT_TOKENS] == 200
    assert a[sc.STREAM_CHUNKS] == len(seen)


def test_default_async_records_exactly_what_was_served(
    instrument_with: Any, openai_emulator: OpenAIEmulator
) -> None:
    openai_emulator.push(REPLY)
    plain = asyncio.run(astream(openai_emulator))
    openai_emulator.reset()

    t = instrument_with()
    openai_emulator.push(REPLY)
    seen = asyncio.run(astream(openai_emulator))

    assert seen == plain
    served = openai_emulator.served
    a = attrs(t.one_llm_span())
    assert (a[sc.USAGE_INPUT_TOKENS], a[sc.USAGE_OUTPUT_TOKENS]) == (
        served.prompt_tokens,
        served.completion_tokens,
    )


def test_caller_who_asked_for_usage_sees_the_usage_chunk_as_before(
    instrument_with: Any, openai_emulator: OpenAIEmulator
) -> None:
    asked = {"stream_options": {"include_usage": True}}
    openai_emulator.push(REPLY)
    plain = stream(openai_emulator, **asked)

    t = instrument_with()
    openai_emulator.push(REPLY)
    seen = stream(openai_emulator, **asked)

    assert seen == plain
    assert '"usage":{' in seen[-1] and '"choices":[]' in seen[-1]
    a = attrs(t.one_llm_span())
    assert sc.STREAM_USAGE_INJECTED not in a
    assert a[sc.USAGE_INPUT_TOKENS] == 1000


@pytest.mark.parametrize("mode", ["known", "off"])
def test_known_and_off_leave_a_loopback_request_alone(
    instrument_with: Any, openai_emulator: OpenAIEmulator, mode: str
) -> None:
    t = instrument_with(stream_usage=mode)
    stream(openai_emulator)
    assert sent_stream_options(openai_emulator) == [None]
    assert attrs(t.one_llm_span())[sc.USAGE_SOURCE] == "missing"


def test_default_mode_is_always_and_the_environment_still_chooses(monkeypatch: pytest.MonkeyPatch) -> None:
    from otel_llm_usage.config import Options

    monkeypatch.delenv("OTEL_LLM_USAGE_STREAM_USAGE", raising=False)
    assert Options.resolve({}).stream_usage == "always"
    for mode in ("known", "off", "always"):
        monkeypatch.setenv("OTEL_LLM_USAGE_STREAM_USAGE", mode)
        assert Options.resolve({}).stream_usage == mode


def test_suppressed_instrumentation_leaves_the_request_alone(
    telemetry: Any, openai_emulator: OpenAIEmulator
) -> None:
    from opentelemetry.instrumentation.utils import suppress_instrumentation

    with suppress_instrumentation():
        stream(openai_emulator)
    assert sent_stream_options(openai_emulator) == [None]
    assert telemetry.llm_spans() == []


# --- a server that refuses stream_options --------------------------------------------------------


def test_refusal_is_resent_once_transparently_and_the_endpoint_remembered(
    telemetry: Any, refusing: OpenAIEmulator
) -> None:
    refusing.push(REPLY)
    first = stream(refusing)

    assert sent_stream_options(refusing) == [{"include_usage": True}, None]
    assert len(first) == 4 and all('"usage"' not in chunk for chunk in first)
    span = telemetry.one_llm_span()
    a = attrs(span)
    assert a[sc.STREAM_USAGE_RETRIED] is True
    assert a[sc.STREAM_USAGE_INJECTED] is False
    assert a[sc.USAGE_SOURCE] == "missing"
    assert sc.ERROR_TYPE not in a and span.status.status_code is not StatusCode.ERROR
    assert a[sc.STREAM_CHUNKS] == 4 and sc.STREAM_INCOMPLETE not in a
    assert telemetry.total("gen_ai.client.operation.duration") > 0

    telemetry.exporter.clear()
    refusing.push(REPLY)
    second = stream(refusing)
    assert second == first
    assert sent_stream_options(refusing) == [{"include_usage": True}, None, None]  # not asked again
    a = attrs(telemetry.one_llm_span())
    assert sc.STREAM_USAGE_RETRIED not in a and sc.STREAM_USAGE_INJECTED not in a


def test_refusal_async_is_resent_once(telemetry: Any, refusing: OpenAIEmulator) -> None:
    async def run() -> tuple[list[str], list[str]]:
        refusing.push(REPLY, REPLY)
        return await astream(refusing), await astream(refusing)

    first, second = asyncio.run(run())
    assert first == second and len(first) == 4
    assert sent_stream_options(refusing) == [{"include_usage": True}, None, None]
    spans = telemetry.llm_spans()
    assert len(spans) == 2
    assert attrs(spans[0])[sc.STREAM_USAGE_RETRIED] is True
    assert sc.STREAM_USAGE_RETRIED not in attrs(spans[1])


def test_refusal_through_raw_and_streaming_responses(telemetry: Any, refusing: OpenAIEmulator) -> None:
    completions = client(refusing).chat.completions
    raw = completions.with_raw_response.create(model="gpt-4o", messages=MSGS, stream=True)
    assert raw.status_code == 200
    assert len(list(raw.parse())) == 3
    assert sent_stream_options(refusing) == [{"include_usage": True}, None]

    with OpenAIEmulator(stream_options="reject") as other:
        other_completions = client(other).chat.completions
        with other_completions.with_streaming_response.create(
            model="gpt-4o", messages=MSGS, stream=True
        ) as response:
            assert len(list(response.parse())) == 3
        assert sent_stream_options(other) == [{"include_usage": True}, None]
    spans = telemetry.llm_spans()
    assert len(spans) == 2 and all(attrs(s)[sc.STREAM_USAGE_RETRIED] is True for s in spans)


def test_caller_who_set_stream_options_gets_the_refusal_unchanged(
    telemetry: Any, refusing: OpenAIEmulator
) -> None:
    with pytest.raises(openai.APIStatusError) as raised:
        stream(refusing, stream_options={"include_usage": True})
    assert raised.value.status_code in (400, 422)
    assert sent_stream_options(refusing) == [{"include_usage": True}]  # never resent
    a = attrs(telemetry.one_llm_span())
    assert sc.STREAM_USAGE_RETRIED not in a and a[sc.ERROR_TYPE] == type(raised.value).__name__


def test_another_client_error_is_not_resent(telemetry: Any, openai_emulator: OpenAIEmulator) -> None:
    openai_emulator.push(Reply(status=400, message="'messages' must contain the word 'json'"))
    with pytest.raises(openai.BadRequestError) as raised:
        stream(openai_emulator)
    assert "must contain the word" in raised.value.message
    assert sent_stream_options(openai_emulator) == [{"include_usage": True}]
    assert attrs(telemetry.one_llm_span())[sc.ERROR_TYPE] == "BadRequestError"


def test_a_refusal_of_something_else_reaches_the_caller_and_is_not_remembered(
    telemetry: Any, openai_emulator: OpenAIEmulator
) -> None:
    # A complaint about an unknown field that is not stream_options: the resend is refused the same.
    refusal = Reply(status=422, message="Failed to deserialize: unknown field `top_k`")
    openai_emulator.push(refusal, refusal)
    with pytest.raises(openai.UnprocessableEntityError) as raised:
        stream(openai_emulator)
    assert "top_k" in raised.value.message
    # The caller's own error: the refusal of the first request is nowhere in its chain.
    chained, inner = [], raised.value.__context__
    while inner is not None:
        chained.append(inner)
        inner = inner.__context__
    assert not any(isinstance(e, openai.APIStatusError) for e in chained), chained
    assert sent_stream_options(openai_emulator) == [{"include_usage": True}, None]
    a = attrs(telemetry.one_llm_span())
    assert a[sc.STREAM_USAGE_RETRIED] is True and a[sc.ERROR_TYPE] == "UnprocessableEntityError"

    stream(openai_emulator)
    assert sent_stream_options(openai_emulator)[-1] == {"include_usage": True}  # still asked


def test_refusal_is_remembered_per_endpoint(telemetry: Any, refusing: OpenAIEmulator) -> None:
    stream(refusing)
    with OpenAIEmulator() as accepting:
        accepting.push(REPLY)
        stream(accepting)
        assert sent_stream_options(accepting) == [{"include_usage": True}]
    assert attrs(telemetry.llm_spans()[-1])[sc.USAGE_INPUT_TOKENS] == 1000


def test_reinstrumenting_forgets_refusals(instrument_with: Any, refusing: OpenAIEmulator) -> None:
    instrument_with()
    stream(refusing)
    otel_llm_usage.uninstrument()
    instrument_with()
    stream(refusing)
    assert sent_stream_options(refusing) == [{"include_usage": True}, None, {"include_usage": True}, None]


# --- a server that ignores stream_options --------------------------------------------------------


def test_ignoring_endpoint_leaves_usage_missing(telemetry: Any, ignoring: OpenAIEmulator) -> None:
    ignoring.push(REPLY)
    seen = stream(ignoring)
    assert sent_stream_options(ignoring) == [{"include_usage": True}]
    assert len(seen) == 4
    a = attrs(telemetry.one_llm_span())
    assert a[sc.STREAM_USAGE_INJECTED] is True and sc.STREAM_USAGE_RETRIED not in a
    assert a[sc.USAGE_SOURCE] == "missing" and sc.USAGE_INPUT_TOKENS not in a
    assert ignoring.served.prompt_tokens == 0


# --- the pieces ----------------------------------------------------------------------------------


class _Error(Exception):
    def __init__(self, status_code: int, message: str, body: Any = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = body


@pytest.mark.parametrize(
    ("error", "refused"),
    [
        (_Error(400, "Unknown parameter: 'stream_options'."), True),
        (_Error(422, "Unprocessable", {"detail": [{"type": "extra_forbidden", "loc": ["body", "x"]}]}), True),
        (_Error(422, "Failed to deserialize the JSON body: unknown field `stream_options`"), True),
        (_Error(400, "Unrecognized request argument supplied: stream_options"), True),
        (_Error(400, "include_usage is not supported"), True),
        (_Error(400, "Invalid 'messages': empty array"), False),
        (_Error(500, "stream_options made the server crash"), False),
        (_Error(429, "Rate limit"), False),
        (ValueError("stream_options"), False),
    ],
)
def test_refuses_stream_options(error: BaseException, refused: bool) -> None:
    assert refuses_stream_options(error) is refused


def test_refusing_endpoints_is_bounded() -> None:
    table = RefusingEndpoints(limit=2)
    for port in (1, 2, 3):
        table.add(("h", port))
    table.add(("h", 3))
    assert len(table) == 2
    assert ("h", 1) not in table and ("h", 2) in table and ("h", 3) in table


def test_refusal_through_the_stream_helper(telemetry: Any, refusing: OpenAIEmulator) -> None:
    refusing.push(REPLY)
    with client(refusing).chat.completions.stream(model="gpt-4o", messages=MSGS) as events:
        final = events.get_final_completion()
    assert final.choices[0].message.content == "This is a deterministic reply from the OpenAI emulator."
    assert final.usage is None  # as without instrumentation: nobody asked
    assert sent_stream_options(refusing) == [{"include_usage": True}, None]
    assert attrs(telemetry.one_llm_span())[sc.STREAM_USAGE_RETRIED] is True


def test_known_mode_resends_too_for_an_azure_api_version_that_refuses(instrument_with: Any) -> None:
    t = instrument_with(stream_usage="known")
    with OpenAIEmulator(stream_options="reject") as emu:
        azure = openai.AzureOpenAI(
            azure_endpoint=emu.azure_endpoint, api_version="2024-02-01", api_key=API_KEY, max_retries=0
        )
        chunks = list(azure.chat.completions.create(model="my-deployment", messages=MSGS, stream=True))
        assert len(chunks) == 3
        assert sent_stream_options(emu) == [{"include_usage": True}, None]
    a = attrs(t.one_llm_span())
    assert a[sc.PROVIDER_NAME] == "azure.ai.openai" and a[sc.STREAM_USAGE_RETRIED] is True
