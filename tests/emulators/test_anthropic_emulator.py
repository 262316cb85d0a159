"""The Anthropic emulator, driven by the real anthropic SDK (sync and async) with no instrumentation."""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import anthropic
import pytest
from anthropic import Anthropic, AnthropicBedrock, AnthropicVertex, AsyncAnthropic

from emulators import AnthropicEmulator, AnthropicReply
from emulators.anthropic import DEFAULT_TEXT, bedrock_response_model, event_stream_frame

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

Mode = Literal["sync", "async"]
MODEL = "claude-sonnet-4-5"
MESSAGES: list[Any] = [{"role": "user", "content": "Say something short."}]
BEDROCK_MODEL = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
VERTEX_MODEL = "claude-sonnet-4-5@20250929"


@pytest.fixture
def emu() -> Iterator[AnthropicEmulator]:
    with AnthropicEmulator() as server:
        yield server


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> Mode:
    value: Mode = request.param
    return value


class Api:
    """Runs one SDK call through a fresh sync or async first-party client, draining streams inside it."""

    def __init__(self, emu: AnthropicEmulator, mode: Mode) -> None:
        self.emu = emu
        self.mode = mode

    def _run(self, kwargs: dict[str, Any], iterate: bool) -> tuple[Any, BaseException | None]:
        body = {"model": MODEL, "max_tokens": 64, "messages": MESSAGES, **kwargs}
        items: list[Any] = []
        if self.mode == "sync":
            with Anthropic(base_url=self.emu.base_url, api_key="k", max_retries=0) as client:
                result = client.messages.create(**body)
                if not iterate:
                    return result, None
                try:
                    items.extend(result)
                except Exception as exc:
                    return items, exc
                return items, None

        async def main() -> tuple[Any, BaseException | None]:
            async with AsyncAnthropic(base_url=self.emu.base_url, api_key="k", max_retries=0) as client:
                result = await client.messages.create(**body)
                if not iterate:
                    return result, None
                try:
                    async for item in result:
                        items.append(item)
                except Exception as exc:
                    return items, exc
                return items, None

        return asyncio.run(main())

    def call(self, **kwargs: Any) -> Any:
        return self._run(kwargs, iterate=False)[0]

    def stream(self, **kwargs: Any) -> list[Any]:
        items, error = self._run({**kwargs, "stream": True}, iterate=True)
        if error is not None:
            raise error
        result: list[Any] = items
        return result

    def drain(self, **kwargs: Any) -> tuple[list[Any], BaseException | None]:
        items, error = self._run({**kwargs, "stream": True}, iterate=True)
        result: list[Any] = items
        return result, error


@pytest.fixture
def api(emu: AnthropicEmulator, mode: Mode) -> Api:
    return Api(emu, mode)


def raw_post(
    emu: AnthropicEmulator, path: str, body: object, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """POST with the standard library, to see the exact bytes the SDK would parse."""
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=10)
    sent = {"Content-Type": "application/json", "x-api-key": "k", "anthropic-version": "2023-06-01"}
    if headers is not None:
        sent = headers
    try:
        conn.request("POST", path, body=json.dumps(body), headers=sent)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def sse_events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in raw.decode().split("\n\n"):
        if not block:
            continue
        event_line, data_line = block.split("\n")
        assert event_line.startswith("event: ") and data_line.startswith("data: ")
        out.append((event_line[len("event: ") :], json.loads(data_line[len("data: ") :])))
    return out


def bedrock() -> AnthropicBedrock:
    return AnthropicBedrock(
        aws_access_key="AKIAEXAMPLE", aws_secret_key="secret", aws_region="us-east-1", max_retries=0
    )


# --- first-party Messages API --------------------------------------------------------------------


def test_message_json_every_usage_detail(emu: AnthropicEmulator, api: Api) -> None:
    emu.push(
        AnthropicReply(
            text="Bonjour.",
            model="claude-sonnet-4-5-20250929",
            input_tokens=300,
            cache_read_input_tokens=5000,
            cache_5m_input_tokens=600,
            cache_1h_input_tokens=400,
            output_tokens=400,
            thinking_tokens=120,
            web_search_requests=2,
            service_tier="priority",
            stop_reason="max_tokens",
            id="msg_fixed",
        )
    )
    message = api.call()
    assert isinstance(message, anthropic.types.Message)
    assert message.id == "msg_fixed" and message.model == "claude-sonnet-4-5-20250929"
    assert message.content[0].type == "text" and message.content[0].text == "Bonjour."
    assert message.stop_reason == "max_tokens"
    usage = message.usage
    assert usage.input_tokens == 300
    assert usage.cache_read_input_tokens == 5000
    assert usage.cache_creation_input_tokens == 1000
    assert usage.cache_creation is not None
    assert usage.cache_creation.ephemeral_5m_input_tokens == 600
    assert usage.cache_creation.ephemeral_1h_input_tokens == 400
    assert usage.output_tokens == 400
    assert usage.output_tokens_details is not None and usage.output_tokens_details.thinking_tokens == 120
    assert usage.server_tool_use is not None and usage.server_tool_use.web_search_requests == 2
    assert usage.service_tier == "priority"


def test_message_json_wire_shape(emu: AnthropicEmulator) -> None:
    emu.push(AnthropicReply(input_tokens=12, output_tokens=6, cache_creation_input_tokens=7))
    status, headers, raw = raw_post(
        emu, "/v1/messages", {"model": MODEL, "max_tokens": 5, "messages": MESSAGES}
    )
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert headers["request-id"].startswith("req_")
    body = json.loads(raw)
    assert list(body) == ["id", "type", "role", "model", "content", "stop_reason", "stop_sequence", "usage"]
    assert body["id"].startswith("msg_01") and body["type"] == "message" and body["role"] == "assistant"
    assert body["content"] == [{"type": "text", "text": DEFAULT_TEXT}]
    assert body["stop_reason"] == "end_turn" and body["stop_sequence"] is None
    assert body["usage"] == {
        "input_tokens": 12,
        "cache_creation_input_tokens": 7,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 7, "ephemeral_1h_input_tokens": 0},
        "output_tokens": 6,
        "service_tier": "standard",
    }


def test_stream_event_sequence_and_usage(emu: AnthropicEmulator, api: Api) -> None:
    emu.push(
        AnthropicReply(
            text="one two three four",
            chunks=4,
            input_tokens=40,
            cache_read_input_tokens=10,
            cache_1h_input_tokens=5,
            output_tokens=9,
        )
    )
    events = api.stream()
    assert [e.type for e in events] == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * 4,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[0].message.usage
    assert start.input_tokens == 40 and start.cache_read_input_tokens == 10
    assert start.cache_creation_input_tokens == 5
    assert start.cache_creation.ephemeral_1h_input_tokens == 5
    assert start.output_tokens == 1
    assert "".join(e.delta.text for e in events if e.type == "content_block_delta") == "one two three four"
    delta = events[-2]
    assert delta.delta.stop_reason == "end_turn"
    assert delta.usage.output_tokens == 9
    assert (delta.usage.input_tokens, delta.usage.cache_read_input_tokens) == (40, 10)


def test_older_message_delta_carries_output_only(emu: AnthropicEmulator, api: Api) -> None:
    emu.push(AnthropicReply(input_tokens=40, output_tokens=9, usage_in_message_delta=False))
    events = api.stream()
    delta = next(e for e in events if e.type == "message_delta")
    assert delta.usage.output_tokens == 9
    assert delta.usage.input_tokens is None and delta.usage.cache_read_input_tokens is None


def test_stream_wire_framing_with_ping(emu: AnthropicEmulator) -> None:
    body = {"model": MODEL, "max_tokens": 5, "messages": MESSAGES, "stream": True}
    status, headers, raw = raw_post(emu, "/v1/messages", body)
    assert status == 200
    assert headers["content-type"].startswith("text/event-stream")
    assert headers["transfer-encoding"] == "chunked"
    events = sse_events(raw)
    names = [name for name, _ in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-2:] == ["message_delta", "message_stop"]
    for name, data in events:
        assert data["type"] == name
    assert events[0][1]["message"]["content"] == [] and events[0][1]["message"]["stop_reason"] is None


def test_stream_helper_final_message(emu: AnthropicEmulator, mode: Mode) -> None:
    emu.push(AnthropicReply(text="alpha beta", chunks=2, input_tokens=70, output_tokens=3))
    kwargs: dict[str, Any] = {"model": MODEL, "max_tokens": 16, "messages": MESSAGES}
    if mode == "sync":
        client = Anthropic(base_url=emu.base_url, api_key="k", max_retries=0)
        with client, client.messages.stream(**kwargs) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
    else:

        async def main() -> tuple[str, Any]:
            aclient = AsyncAnthropic(base_url=emu.base_url, api_key="k", max_retries=0)
            async with aclient, aclient.messages.stream(**kwargs) as stream:
                pieces = [piece async for piece in stream.text_stream]
                return "".join(pieces), await stream.get_final_message()

        text, final = asyncio.run(main())
    assert text == "alpha beta"
    assert final.usage.input_tokens == 70 and final.usage.output_tokens == 3


def test_raw_usage_and_start_raw_usage_are_sent_verbatim(emu: AnthropicEmulator, api: Api) -> None:
    raw = {"input_tokens": 5, "output_tokens": 2, "cache_read_input_tokens": 3, "extra": "kept"}
    emu.push(AnthropicReply(raw_usage=raw))
    assert api.call().usage.model_dump(exclude_none=True)["extra"] == "kept"
    emu.push(AnthropicReply(raw_usage=raw, start_raw_usage={"input_tokens": 1, "output_tokens": 1}))
    events = api.stream()
    assert events[0].message.usage.input_tokens == 1
    assert events[-2].usage.input_tokens == 5 and events[-2].usage.cache_read_input_tokens == 3


def test_omit_usage(emu: AnthropicEmulator) -> None:
    emu.push(AnthropicReply(omit_usage=True))
    _, _, raw = raw_post(emu, "/v1/messages", {"model": MODEL, "max_tokens": 5, "messages": MESSAGES})
    assert "usage" not in json.loads(raw)
    emu.push(AnthropicReply(omit_usage=True))
    body = {"model": MODEL, "max_tokens": 5, "messages": MESSAGES, "stream": True}
    _, _, raw = raw_post(emu, "/v1/messages", body)
    events = dict(sse_events(raw))
    assert "usage" not in events["message_start"]["message"] and "usage" not in events["message_delta"]


def test_count_tokens_consumes_no_reply(emu: AnthropicEmulator, mode: Mode) -> None:
    emu.push(AnthropicReply(text="kept for the next message"))
    if mode == "sync":
        with Anthropic(base_url=emu.base_url, api_key="k") as client:
            count = client.messages.count_tokens(model=MODEL, messages=MESSAGES)
    else:

        async def main() -> Any:
            async with AsyncAnthropic(base_url=emu.base_url, api_key="k") as client:
                return await client.messages.count_tokens(model=MODEL, messages=MESSAGES)

        count = asyncio.run(main())
    assert count.input_tokens > 0
    assert emu.pending == 1
    served = emu.served
    assert served.count_tokens_requests == 1 and served.requests == 0


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_cls", "error_type"),
    [
        (400, anthropic.BadRequestError, "invalid_request_error"),
        (401, anthropic.AuthenticationError, "authentication_error"),
        (404, anthropic.NotFoundError, "not_found_error"),
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (500, anthropic.InternalServerError, "api_error"),
        (529, anthropic.OverloadedError, "overloaded_error"),
    ],
)
def test_error_statuses_raise_sdk_errors(
    emu: AnthropicEmulator, api: Api, status: int, error_cls: type[Exception], error_type: str
) -> None:
    emu.push(AnthropicReply(status=status))
    with pytest.raises(error_cls) as caught:
        api.call()
    error = caught.value
    assert isinstance(error, anthropic.APIStatusError)
    assert error.status_code == status
    assert isinstance(error.body, dict) and error.body["type"] == "error"
    assert error.body["error"]["type"] == error_type
    assert error.body["request_id"].startswith("req_")


def test_error_fields_can_be_scripted_and_apply_to_streams(emu: AnthropicEmulator, api: Api) -> None:
    emu.push(AnthropicReply(status=429, error_type="rate_limit_error", message="slow down"))
    with pytest.raises(anthropic.RateLimitError) as caught:
        api.stream()
    assert isinstance(caught.value.body, dict) and caught.value.body["error"]["message"] == "slow down"


def test_error_event_mid_stream(emu: AnthropicEmulator, api: Api) -> None:
    emu.push(AnthropicReply(chunks=5, error_after=4))
    events, error = api.drain()
    assert [e.type for e in events] == ["message_start", "content_block_start", "content_block_delta"]
    assert isinstance(error, anthropic.APIStatusError)
    assert isinstance(error.body, dict)
    assert error.body["error"] == {"type": "overloaded_error", "message": "Overloaded"}


def test_cut_stream_raises_and_counts_only_what_was_sent(emu: AnthropicEmulator, api: Api) -> None:
    emu.push(AnthropicReply(chunks=5, cut_after=3, input_tokens=50, output_tokens=9))
    events, error = api.drain()
    assert error is not None
    assert 0 < len(events) <= 3
    served = emu.served
    assert served.input_tokens == 50 and served.output_tokens == 0


def test_first_party_requires_key_and_version(emu: AnthropicEmulator) -> None:
    body = {"model": MODEL, "max_tokens": 5, "messages": MESSAGES}
    status, _, raw = raw_post(emu, "/v1/messages", body, headers={"anthropic-version": "2023-06-01"})
    assert status == 401 and json.loads(raw)["error"]["type"] == "authentication_error"
    status, _, raw = raw_post(emu, "/v1/messages", body, headers={"x-api-key": "k"})
    assert status == 400 and "anthropic-version" in json.loads(raw)["error"]["message"]


def test_unknown_path_and_missing_model(emu: AnthropicEmulator) -> None:
    status, _, raw = raw_post(emu, "/v1/complete_me", {})
    assert status == 404 and json.loads(raw)["error"]["type"] == "not_found_error"
    status, _, raw = raw_post(emu, "/v1/messages", {"max_tokens": 5, "messages": MESSAGES})
    assert status == 400 and json.loads(raw)["type"] == "error"
    assert emu.served.requests == 0


# --- Amazon Bedrock ------------------------------------------------------------------------------


def test_bedrock_invoke(emu: AnthropicEmulator) -> None:
    emu.push(AnthropicReply(input_tokens=20, output_tokens=4, cache_read_input_tokens=8))
    client = bedrock().with_options(base_url=emu.base_url)
    message = client.messages.create(model=BEDROCK_MODEL, max_tokens=16, messages=MESSAGES)
    assert message.model == "claude-sonnet-4-5-20250929"
    assert message.id.startswith("msg_bdrk_")
    assert message.usage.cache_read_input_tokens == 8
    request = emu.requests[-1]
    assert request.path == f"/model/{BEDROCK_MODEL}/invoke"
    assert isinstance(request.json["anthropic_version"], str) and request.json["anthropic_version"]
    assert "model" not in request.json and "stream" not in request.json
    assert request.headers["authorization"].startswith("AWS4-HMAC-SHA256")


def test_bedrock_event_stream_framing(emu: AnthropicEmulator) -> None:
    from botocore.eventstream import EventStreamBuffer

    emu.push(AnthropicReply(text="a b", chunks=2, input_tokens=20, output_tokens=4))
    status, headers, raw = raw_post(
        emu,
        f"/model/{BEDROCK_MODEL}/invoke-with-response-stream",
        {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 5, "messages": MESSAGES},
    )
    assert status == 200 and headers["content-type"] == "application/vnd.amazon.eventstream"
    buffer = EventStreamBuffer()
    buffer.add_data(raw)  # the buffer checks both CRCs of every message
    messages = list(buffer)
    assert all(
        m.headers[":message-type"] == "event" and m.headers[":event-type"] == "chunk" for m in messages
    )
    events = [json.loads(base64.b64decode(json.loads(m.payload)["bytes"])) for m in messages]
    assert [e["type"] for e in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[-1]["amazon-bedrock-invocationMetrics"]["inputTokenCount"] == 20
    assert events[-1]["amazon-bedrock-invocationMetrics"]["outputTokenCount"] == 4


def test_bedrock_stream_through_sdk_and_errors(emu: AnthropicEmulator) -> None:
    client = bedrock().with_options(base_url=emu.base_url)
    emu.push(AnthropicReply(input_tokens=20, output_tokens=4))
    events = list(client.messages.create(model=BEDROCK_MODEL, max_tokens=16, messages=MESSAGES, stream=True))
    assert events[0].type == "message_start" and events[-2].usage.output_tokens == 4

    emu.push(AnthropicReply(status=429))
    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(model=BEDROCK_MODEL, max_tokens=16, messages=MESSAGES)
    assert caught.value.response.headers["x-amzn-errortype"].startswith("ThrottlingException:")

    emu.push(AnthropicReply(error_after=3))
    with pytest.raises(anthropic.APIStatusError) as stream_error:
        list(client.messages.create(model=BEDROCK_MODEL, max_tokens=16, messages=MESSAGES, stream=True))
    assert isinstance(stream_error.value.body, dict)
    assert stream_error.value.body["error"]["type"] == "serviceUnavailableException"


def test_event_stream_frame_and_bedrock_model_names() -> None:
    from botocore.eventstream import EventStreamBuffer

    frame = event_stream_frame({":message-type": "event", "k": "v"}, b"{}")
    buffer = EventStreamBuffer()
    buffer.add_data(frame)
    (message,) = list(buffer)
    assert message.headers == {":message-type": "event", "k": "v"} and message.payload == b"{}"
    assert bedrock_response_model("anthropic.claude-3-5-haiku-20241022-v1:0") == "claude-3-5-haiku-20241022"
    assert (
        bedrock_response_model("global.anthropic.claude-sonnet-4-5-20250929-v1:0")
        == "claude-sonnet-4-5-20250929"
    )
    assert bedrock_response_model("arn:aws:bedrock:custom") == "arn:aws:bedrock:custom"


# --- Vertex AI -----------------------------------------------------------------------------------


def test_vertex_raw_predict_stream_and_count_tokens(emu: AnthropicEmulator) -> None:
    client = AnthropicVertex(
        base_url=emu.vertex_base_url, region="us-east5", project_id="proj", access_token="tok", max_retries=0
    )
    emu.push(AnthropicReply(input_tokens=11, output_tokens=2))
    message = client.messages.create(model=VERTEX_MODEL, max_tokens=8, messages=MESSAGES)
    assert message.model == "claude-sonnet-4-5-20250929" and message.usage.input_tokens == 11
    request = emu.requests[-1]
    prefix = "/v1/projects/proj/locations/us-east5/publishers/anthropic/models"
    assert request.path == f"{prefix}/{VERTEX_MODEL}:rawPredict"
    assert isinstance(request.json["anthropic_version"], str) and "model" not in request.json
    assert request.headers["authorization"] == "Bearer tok"

    events = list(client.messages.create(model=VERTEX_MODEL, max_tokens=8, messages=MESSAGES, stream=True))
    assert events[-1].type == "message_stop"
    assert emu.requests[-1].path.endswith(":streamRawPredict")

    assert client.messages.count_tokens(model=VERTEX_MODEL, messages=MESSAGES).input_tokens > 0
    assert emu.requests[-1].path.endswith("/models/count-tokens:rawPredict")

    emu.push(AnthropicReply(status=529))
    with pytest.raises(anthropic.OverloadedError):
        client.messages.create(model=VERTEX_MODEL, max_tokens=8, messages=MESSAGES)


# --- scripting, bookkeeping and server behaviour -------------------------------------------------


def test_requests_are_recorded(emu: AnthropicEmulator, api: Api) -> None:
    api.call(stop_sequences=["END"])
    (request,) = emu.requests
    assert request.method == "POST" and request.path == "/v1/messages"
    assert request.json["stop_sequences"] == ["END"] and request.json["model"] == MODEL
    assert request.headers["authorization"] == "Bearer k"
    assert request.headers["anthropic-version"]


def test_default_reply_and_order_and_reset(emu: AnthropicEmulator, api: Api) -> None:
    assert api.call().content[0].text == DEFAULT_TEXT
    emu.push(AnthropicReply(text="first"), AnthropicReply(text="second"))
    assert api.call().content[0].text == "first"
    assert emu.pending == 1
    emu.reset()
    assert emu.pending == 0 and emu.requests == [] and emu.served.requests == 0
    assert api.call().content[0].text == DEFAULT_TEXT


def test_served_totals(emu: AnthropicEmulator, api: Api) -> None:
    emu.push(
        AnthropicReply(
            input_tokens=10, output_tokens=3, cache_read_input_tokens=4, cache_creation_input_tokens=6
        ),
        AnthropicReply(input_tokens=20, output_tokens=5, cache_read_input_tokens=1),
        AnthropicReply(status=429),
    )
    api.call()
    api.stream()
    with pytest.raises(anthropic.RateLimitError):
        api.call()
    served = emu.served
    assert served.requests == 3
    assert (served.input_tokens, served.output_tokens) == (30, 8)
    assert (served.cache_read_input_tokens, served.cache_creation_input_tokens) == (5, 6)


def test_gate_holds_the_stream_until_released(emu: AnthropicEmulator) -> None:
    gate = threading.Event()
    emu.push(AnthropicReply(chunks=3, gate=gate, gate_after=2))
    with Anthropic(base_url=emu.base_url, api_key="k", max_retries=0) as client:
        stream = client.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES, stream=True)
        iterator = iter(stream)
        assert next(iterator).type == "message_start"
        assert next(iterator).type == "content_block_start"
        assert emu.served.output_tokens == 0
        gate.set()
        rest = list(iterator)
    assert rest[-1].type == "message_stop"


def test_concurrent_requests_are_all_counted(emu: AnthropicEmulator) -> None:
    def one(_: int) -> int:
        with Anthropic(base_url=emu.base_url, api_key="k", max_retries=0) as client:
            return client.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES).usage.output_tokens

    with ThreadPoolExecutor(max_workers=8) as pool:
        outputs = list(pool.map(one, range(24)))
    assert emu.served.requests == 24
    assert emu.served.output_tokens == sum(outputs)


def test_delay_is_applied(emu: AnthropicEmulator, api: Api) -> None:
    emu.push(AnthropicReply(delay_s=0.2))
    started = time.monotonic()
    api.call()
    assert time.monotonic() - started >= 0.2


def test_client_disconnect_mid_stream_leaves_server_healthy(
    emu: AnthropicEmulator, capfd: pytest.CaptureFixture[str]
) -> None:
    gate = threading.Event()
    emu.push(AnthropicReply(chunks=20, gate=gate, gate_after=3))
    with Anthropic(base_url=emu.base_url, api_key="k", max_retries=0) as client:
        stream = client.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES, stream=True)
        next(iter(stream))
        stream.close()
        gate.set()
        assert client.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES).content
    started = time.monotonic()
    emu.stop()
    assert time.monotonic() - started < 1.5
    assert "Traceback" not in capfd.readouterr().err


def test_stop_releases_a_held_stream() -> None:
    emu = AnthropicEmulator().start()
    client = Anthropic(base_url=emu.base_url, api_key="k", max_retries=0)
    try:
        emu.push(AnthropicReply(chunks=5, gate=threading.Event(), gate_after=1))
        stream = client.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES, stream=True)
        iterator = iter(stream)
        next(iterator)
        started = time.monotonic()
        emu.stop()
        assert time.monotonic() - started < 1.5
        with pytest.raises(Exception):  # noqa: B017 - whichever transport error the SDK surfaces
            list(iterator)
    finally:
        client.close()
        emu.stop()
