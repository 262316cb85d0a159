"""The Cohere emulator, driven by the real cohere SDK (sync and async) with no instrumentation."""

from __future__ import annotations

import asyncio
import base64
import http.client
import inspect
import json
import struct
import threading
from collections.abc import Iterator
from typing import Any, Literal

import cohere
import httpx
import pytest
from cohere.core.api_error import ApiError

from emulators import CohereEmulator, CohereReply
from emulators.cohere import DEFAULT_TEXT, TEMPLATE_TOKENS

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

Mode = Literal["sync", "async"]
MODEL = "command-a-03-2025"
MESSAGES: list[Any] = [{"role": "user", "content": "Say something short."}]


@pytest.fixture
def emu() -> Iterator[CohereEmulator]:
    with CohereEmulator() as server:
        yield server


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> Mode:
    value: Mode = request.param
    return value


def client(make: Any, emu: CohereEmulator) -> Any:
    """A client that sends each call once (releases before 7 take no `max_retries` and some retry)."""
    if "max_retries" in inspect.signature(make).parameters:
        return make(api_key="k", base_url=emu.base_url, max_retries=0)
    made = make(api_key="k", base_url=emu.base_url)
    http = made._client_wrapper.httpx_client
    if hasattr(http, "base_max_retries"):
        http.base_max_retries = 0
    return made


def field(obj: Any, name: str) -> Any:
    """A field of an SDK object, also where an older SDK release keeps it as an untyped extra (a dict)."""
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


class Api:
    """Runs one SDK call through a fresh sync or async v2 client, draining streams inside it."""

    def __init__(self, emu: CohereEmulator, mode: Mode) -> None:
        self.emu = emu
        self.mode = mode

    def call(self, method: str, **kwargs: Any) -> Any:
        if self.mode == "sync":
            c = client(cohere.ClientV2, self.emu)
            return getattr(c, method)(**kwargs)

        async def main() -> Any:
            c = client(cohere.AsyncClientV2, self.emu)
            return await getattr(c, method)(**kwargs)

        return asyncio.run(main())

    def chat(self, **kwargs: Any) -> Any:
        return self.call("chat", **{"model": MODEL, "messages": MESSAGES, **kwargs})

    def drain(self, **kwargs: Any) -> tuple[list[Any], BaseException | None]:
        body = {"model": MODEL, "messages": MESSAGES, **kwargs}
        items: list[Any] = []
        if self.mode == "sync":
            c = client(cohere.ClientV2, self.emu)
            try:
                items.extend(c.chat_stream(**body))
            except Exception as exc:
                return items, exc
            return items, None

        async def main() -> tuple[list[Any], BaseException | None]:
            c = client(cohere.AsyncClientV2, self.emu)
            try:
                async for item in c.chat_stream(**body):
                    items.append(item)
            except Exception as exc:
                return items, exc
            return items, None

        return asyncio.run(main())


@pytest.fixture
def api(emu: CohereEmulator, mode: Mode) -> Api:
    return Api(emu, mode)


def raw_post(
    emu: CohereEmulator, path: str, body: object, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """POST with the standard library, to see the exact bytes the SDK would parse."""
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=10)
    sent = {"Content-Type": "application/json", "Authorization": "Bearer k"} if headers is None else headers
    try:
        conn.request("POST", path, body=json.dumps(body), headers=sent)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


# --- chat --------------------------------------------------------------------------------------


def test_chat_json_reply_and_usage(api: Api, emu: CohereEmulator) -> None:
    emu.push(CohereReply(billed_input_tokens=120, billed_output_tokens=30, cached_tokens=64, id="chat-1"))
    response = api.chat()
    assert isinstance(response, cohere.V2ChatResponse)
    assert response.id == "chat-1" and response.finish_reason == "COMPLETE"
    assert response.message.content[0].text == DEFAULT_TEXT
    usage = response.usage
    assert (usage.billed_units.input_tokens, usage.billed_units.output_tokens) == (120, 30)
    assert (usage.tokens.input_tokens, usage.tokens.output_tokens) == (120 + TEMPLATE_TOKENS, 30)
    assert usage.cached_tokens == 64
    served = emu.served
    assert (served.requests, served.billed_input_tokens, served.billed_output_tokens) == (1, 120, 30)
    assert (served.input_tokens, served.cached_tokens) == (120 + TEMPLATE_TOKENS, 64)
    sent = emu.requests[0]
    assert sent.path == "/v2/chat" and sent.json["stream"] is False and sent.json["model"] == MODEL


def test_default_counts_are_deterministic(api: Api, emu: CohereEmulator) -> None:
    first, second = api.chat(), api.chat()
    assert first.usage == second.usage
    assert first.usage.billed_units.output_tokens == len(DEFAULT_TEXT.split())
    assert first.usage.tokens.input_tokens == first.usage.billed_units.input_tokens + TEMPLATE_TOKENS


def test_chat_stream_events_parse_in_the_sdk(api: Api, emu: CohereEmulator) -> None:
    emu.push(CohereReply(text="one two three four", chunks=4, billed_input_tokens=9, billed_output_tokens=4))
    events, error = api.drain()
    assert error is None
    assert [e.type for e in events] == ["message-start", "content-start", *["content-delta"] * 4,
                                        "content-end", "message-end"]  # fmt: skip
    assert "".join(e.delta.message.content.text for e in events if e.type == "content-delta") == (
        "one two three four"
    )
    end = events[-1].delta
    assert end.finish_reason == "COMPLETE"
    billed = field(field(end, "usage"), "billed_units")
    assert (field(billed, "input_tokens"), field(billed, "output_tokens")) == (9, 4)
    assert emu.requests[0].json["stream"] is True
    assert (emu.served.billed_input_tokens, emu.served.billed_output_tokens) == (9, 4)


def test_sse_framing_is_byte_exact(emu: CohereEmulator) -> None:
    emu.push(CohereReply(text="ab", chunks=2, billed_input_tokens=3, billed_output_tokens=2, id="s-9"))
    status, headers, raw = raw_post(emu, "/v2/chat", {"model": MODEL, "messages": MESSAGES, "stream": True})
    assert status == 200
    assert headers["content-type"] == "text/event-stream" and headers["transfer-encoding"] == "chunked"
    blocks = raw.decode().split("\n\n")
    assert blocks[-2:] == ["data: [DONE]", ""]
    events = []
    for block in blocks[:-2]:
        event_line, data_line = block.split("\n")
        name = event_line.removeprefix("event: ")
        payload = json.loads(data_line.removeprefix("data: "))
        assert payload["type"] == name
        assert data_line.removeprefix("data: ") == json.dumps(payload, separators=(",", ":"))
        events.append(payload)
    assert events[0] == {
        "id": "s-9",
        "type": "message-start",
        "delta": {
            "message": {
                "role": "assistant",
                "content": [],
                "tool_plan": "",
                "tool_calls": [],
                "citations": [],
            }
        },
    }
    assert events[1] == {
        "type": "content-start",
        "index": 0,
        "delta": {"message": {"content": {"type": "text", "text": ""}}},
    }
    assert events[2] == {
        "type": "content-delta",
        "index": 0,
        "delta": {"message": {"content": {"text": "a"}}},
    }
    assert events[4] == {"type": "content-end", "index": 0}
    assert events[5] == {
        "type": "message-end",
        "delta": {
            "finish_reason": "COMPLETE",
            "usage": {
                "billed_units": {"input_tokens": 3, "output_tokens": 2},
                "tokens": {"input_tokens": 3 + TEMPLATE_TOKENS, "output_tokens": 2},
            },
        },
    }


def test_tool_calls_json_and_stream(api: Api, emu: CohereEmulator) -> None:
    call = {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    emu.push(CohereReply(tool_calls=[call]), CohereReply(tool_calls=[call], chunks=1))
    response = api.chat()
    assert response.finish_reason == "TOOL_CALL" and response.message.content is None
    (tool_call,) = response.message.tool_calls
    assert tool_call.function.name == "get_weather" and tool_call.function.arguments == call["arguments"]
    assert response.message.tool_plan
    events, error = api.drain()
    assert error is None
    types = [e.type for e in events]
    tool_events = ["tool-call-start", "tool-call-delta", "tool-call-end"]
    assert types == ["message-start", "tool-plan-delta", *tool_events, "message-end"]
    assert events[2].delta.message.tool_calls.function.name == "get_weather"
    assert events[3].delta.message.tool_calls.function.arguments == call["arguments"]
    assert events[-1].delta.finish_reason == "TOOL_CALL"


def test_raw_and_omitted_usage(api: Api, emu: CohereEmulator) -> None:
    raw_usage = {"billed_units": {"input_tokens": 5, "output_tokens": 1}, "cached_tokens": 2}
    emu.push(CohereReply(raw_usage=raw_usage), CohereReply(omit_usage=True), CohereReply(omit_usage=True))
    assert api.chat().usage.billed_units.input_tokens == 5
    assert api.chat().usage is None
    events, _ = api.drain()
    assert field(events[-1].delta, "usage") is None and events[-1].delta.finish_reason == "COMPLETE"
    served = emu.served
    assert (served.requests, served.billed_input_tokens, served.cached_tokens) == (3, 5, 2)


def test_stream_cut_short_raises_in_the_sdk(api: Api, emu: CohereEmulator) -> None:
    emu.push(CohereReply(chunks=4, cut_after=3, billed_input_tokens=50))
    events, error = api.drain()
    assert isinstance(error, httpx.RemoteProtocolError)
    assert [e.type for e in events] == ["message-start", "content-start", "content-delta"]
    assert emu.served.billed_input_tokens == 0  # message-end never went out


def test_gate_holds_the_stream(emu: CohereEmulator) -> None:
    gate = threading.Event()
    emu.push(CohereReply(chunks=3, gate=gate, gate_after=2))
    c = client(cohere.ClientV2, emu)
    events = c.chat_stream(model=MODEL, messages=MESSAGES)
    assert next(events).type == "message-start"
    assert next(events).type == "content-start"
    gate.set()
    assert [e.type for e in events][-1] == "message-end"


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "exc_type"),
    [
        (400, cohere.BadRequestError),
        (401, cohere.UnauthorizedError),
        (402, ApiError),
        (404, cohere.NotFoundError),
        (422, cohere.UnprocessableEntityError),
        (429, cohere.TooManyRequestsError),
        (498, cohere.InvalidTokenError),
        (500, cohere.InternalServerError),
        (503, cohere.ServiceUnavailableError),
        (504, cohere.GatewayTimeoutError),
    ],
)
def test_errors_raise_the_sdk_exception_for_the_status(
    api: Api, emu: CohereEmulator, status: int, exc_type: type[ApiError]
) -> None:
    emu.push(CohereReply(status=status), CohereReply(status=status))
    with pytest.raises(exc_type) as caught:
        api.chat()
    assert type(caught.value) is exc_type and caught.value.status_code == status
    body = caught.value.body
    assert set(body) == {"id", "message"} and body["message"]
    events, error = api.drain()
    assert events == [] and type(error) is exc_type
    assert emu.served.requests == 2


def test_missing_api_key_and_bad_bodies(emu: CohereEmulator) -> None:
    status, _, raw = raw_post(emu, "/v2/chat", {"model": MODEL, "messages": MESSAGES}, {})
    assert status == 401 and json.loads(raw)["message"] == "no api key supplied"
    status, _, raw = raw_post(emu, "/v2/chat", {"messages": MESSAGES})
    assert status == 400 and "model" in json.loads(raw)["message"]
    status, _, raw = raw_post(emu, "/v2/chat", {"model": MODEL, "messages": []})
    assert status == 400
    status, _, raw = raw_post(emu, "/v1/generate", {"model": MODEL})
    assert status == 404 and set(json.loads(raw)) == {"id", "message"}
    assert emu.served.requests == 0 and len(emu.requests) == 4


# --- embed -------------------------------------------------------------------------------------


def test_embed_shapes_and_billed_units(api: Api, emu: CohereEmulator) -> None:
    emu.push(CohereReply(billed_input_tokens=17))
    response = api.call(
        "embed",
        model="embed-v4.0",
        texts=["a", "b", "c"],
        input_type="search_document",
        embedding_types=["float", "int8"],
    )
    assert response.texts == ["a", "b", "c"]
    floats, ints = response.embeddings.float_, response.embeddings.int8
    assert floats is not None and ints is not None
    assert len(floats) == len(ints) == 3 and len(floats[0]) == len(ints[0]) == 8
    assert response.meta.billed_units.input_tokens == 17
    assert response.meta.api_version.version == "2"
    served = emu.served
    assert (served.embed_requests, served.requests, served.billed_input_tokens) == (1, 0, 17)
    assert emu.requests[0].path == "/v2/embed"


def test_embed_wire_shape(emu: CohereEmulator) -> None:
    body = {
        "model": "embed-v4.0",
        "texts": ["a"],
        "input_type": "search_query",
        "embedding_types": ["float", "base64"],
    }
    status, headers, raw = raw_post(emu, "/v2/embed", body)
    assert status == 200 and headers["content-type"] == "application/json"
    payload = json.loads(raw)
    assert set(payload) == {"id", "embeddings", "texts", "meta", "response_type"}
    assert payload["response_type"] == "embeddings_by_type" and payload["texts"] == ["a"]
    (floats,), (encoded,) = payload["embeddings"]["float"], payload["embeddings"]["base64"]
    assert list(struct.unpack("<8f", base64.b64decode(encoded))) == pytest.approx(floats, abs=1e-6)
    assert payload["meta"]["api_version"] == {"version": "2"}
    assert payload["meta"]["billed_units"]["input_tokens"] == emu.served.billed_input_tokens > 0


def test_embed_defaults_and_errors(api: Api, emu: CohereEmulator) -> None:
    first = api.call("embed", model="embed-v4.0", texts=["same"], input_type="search_query")
    second = api.call("embed", model="embed-v4.0", texts=["same"], input_type="search_query")
    assert first.embeddings.float_ == second.embeddings.float_
    assert first.meta.billed_units.input_tokens > 0
    emu.push(CohereReply(status=429))
    with pytest.raises(cohere.TooManyRequestsError):
        api.call("embed", model="embed-v4.0", texts=["x"], input_type="search_query")
