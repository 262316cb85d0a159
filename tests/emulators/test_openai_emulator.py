"""The OpenAI emulator, driven by the real openai SDK (sync and async) with no instrumentation."""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import struct
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import openai
import pytest
from openai import AsyncAzureOpenAI, AsyncOpenAI, AzureOpenAI, OpenAI
from openai.types.chat import ChatCompletionMessageParam
from pydantic import BaseModel

from emulators import OpenAIEmulator, Reply
from emulators.openai import DEFAULT_TEXT

Mode = Literal["sync", "async"]
MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say something short."}]
API_VERSION = "2024-10-21"


def _transport_error() -> type[Exception]:
    """The transport error base of the httpx flavour this openai release sends through."""
    http_client = openai.DefaultHttpxClient.__mro__[1]
    error: type[Exception] = sys.modules[http_client.__module__.split(".")[0]].TransportError
    return error


# openai 3.x wraps a broken stream in APIConnectionError; 2.x lets the transport error through.
STREAM_ERRORS = (openai.APIError, _transport_error())


@pytest.fixture
def emu() -> Iterator[OpenAIEmulator]:
    with OpenAIEmulator() as server:
        yield server


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> Mode:
    value: Mode = request.param
    return value


def _resolve(client: Any, path: str) -> Any:
    target = client
    for part in path.split("."):
        target = getattr(target, part)
    return target


class Api:
    """Runs one SDK call through a fresh sync or async client and drains streams inside it."""

    def __init__(self, emu: OpenAIEmulator, mode: Mode, *, azure: bool = False) -> None:
        self.emu = emu
        self.mode = mode
        self.azure = azure

    def _sync_client(self) -> OpenAI:
        if self.azure:
            return AzureOpenAI(
                azure_endpoint=self.emu.azure_endpoint, api_version=API_VERSION, api_key="k", max_retries=0
            )
        return OpenAI(base_url=self.emu.base_url, api_key="k", max_retries=0)

    def _async_client(self) -> AsyncOpenAI:
        if self.azure:
            return AsyncAzureOpenAI(
                azure_endpoint=self.emu.azure_endpoint, api_version=API_VERSION, api_key="k", max_retries=0
            )
        return AsyncOpenAI(base_url=self.emu.base_url, api_key="k", max_retries=0)

    def _run(self, path: str, kwargs: dict[str, Any], iterate: bool) -> tuple[Any, BaseException | None]:
        items: list[Any] = []
        if self.mode == "sync":
            with self._sync_client() as client:
                result = _resolve(client, path)(**kwargs)
                if not iterate:
                    return result, None
                try:
                    for item in result:
                        items.append(item)
                except Exception as exc:
                    return items, exc
                return items, None

        async def main() -> tuple[Any, BaseException | None]:
            async with self._async_client() as client:
                result = await _resolve(client, path)(**kwargs)
                if not iterate:
                    return result, None
                try:
                    async for item in result:
                        items.append(item)
                except Exception as exc:
                    return items, exc
                return items, None

        return asyncio.run(main())

    def call(self, path: str, **kwargs: Any) -> Any:
        return self._run(path, kwargs, iterate=False)[0]

    def stream(self, path: str, **kwargs: Any) -> list[Any]:
        items, error = self._run(path, {**kwargs, "stream": True}, iterate=True)
        if error is not None:
            raise error
        result: list[Any] = items
        return result

    def drain(self, path: str, **kwargs: Any) -> tuple[list[Any], BaseException | None]:
        items, error = self._run(path, {**kwargs, "stream": True}, iterate=True)
        result: list[Any] = items
        return result, error


@pytest.fixture
def api(emu: OpenAIEmulator, mode: Mode) -> Api:
    return Api(emu, mode)


def raw_post(emu: OpenAIEmulator, path: str, body: object) -> tuple[int, dict[str, str], bytes]:
    """POST with the standard library, to see the exact bytes the SDK would parse."""
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=10)
    try:
        conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def sse_data(raw: bytes) -> list[str]:
    return [line[len("data: ") :] for line in raw.decode().split("\n") if line.startswith("data: ")]


# --- chat completions -------------------------------------------------------------------------------


def test_chat_json_every_usage_detail(emu: OpenAIEmulator, api: Api) -> None:
    emu.push(
        Reply(
            text="Hello there.",
            model="gpt-4o-2024-08-06",
            id="chatcmpl-fixed",
            prompt_tokens=120,
            completion_tokens=40,
            cached_tokens=64,
            reasoning_tokens=16,
            audio_prompt_tokens=3,
            audio_completion_tokens=5,
        )
    )
    completion = api.call("chat.completions.create", model="gpt-4o", messages=MESSAGES)

    assert isinstance(completion, openai.types.chat.ChatCompletion)
    assert completion.id == "chatcmpl-fixed"
    assert completion.object == "chat.completion"
    assert completion.model == "gpt-4o-2024-08-06"
    assert completion.service_tier == "default"
    assert completion.system_fingerprint
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == "Hello there."
    assert choice.finish_reason == "stop"
    usage = completion.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (120, 40, 160)
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 64
    assert usage.prompt_tokens_details.audio_tokens == 3
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 16
    assert usage.completion_tokens_details.audio_tokens == 5
    assert usage.completion_tokens_details.accepted_prediction_tokens == 0
    assert usage.completion_tokens_details.rejected_prediction_tokens == 0


def test_chat_json_wire_shape(emu: OpenAIEmulator) -> None:
    status, headers, raw = raw_post(
        emu, "/v1/chat/completions", {"model": "gpt-4o-mini", "messages": MESSAGES}
    )

    assert status == 200
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(raw)
    assert headers["x-request-id"].startswith("req_")
    body = json.loads(raw)
    assert list(body) == [
        "id",
        "object",
        "created",
        "model",
        "choices",
        "usage",
        "service_tier",
        "system_fingerprint",
    ]
    assert body["id"].startswith("chatcmpl-")
    assert body["choices"][0]["message"] == {
        "role": "assistant",
        "content": DEFAULT_TEXT,
        "refusal": None,
        "annotations": [],
    }
    assert body["choices"][0]["logprobs"] is None
    assert set(body["usage"]) == {
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "prompt_tokens_details",
        "completion_tokens_details",
    }


def test_chat_stream_without_include_usage(emu: OpenAIEmulator, api: Api) -> None:
    emu.push(Reply(text="one two three four five six seven eight", chunks=4))
    chunks = api.stream("chat.completions.create", model="gpt-4o-mini", messages=MESSAGES)

    assert len(chunks) == 4
    assert all(isinstance(c, openai.types.chat.ChatCompletionChunk) for c in chunks)
    assert all(c.usage is None and "usage" not in c.to_dict() for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks] == [None, None, None, "stop"]
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks) == "one two three four five six seven eight"
    )
    assert emu.served.completion_tokens == 0


def test_chat_stream_with_include_usage(emu: OpenAIEmulator, api: Api) -> None:
    emu.push(Reply(text="streamed words", chunks=3, prompt_tokens=30, completion_tokens=7, cached_tokens=10))
    chunks = api.stream(
        "chat.completions.create",
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream_options={"include_usage": True},
    )

    assert len(chunks) == 3 + 1
    *content, final = chunks
    assert all(c.usage is None and c.to_dict()["usage"] is None for c in content)
    assert content[-1].choices[0].finish_reason == "stop"
    assert final.choices == []
    assert final.usage is not None
    assert (final.usage.prompt_tokens, final.usage.completion_tokens, final.usage.total_tokens) == (30, 7, 37)
    assert final.usage.prompt_tokens_details is not None
    assert final.usage.prompt_tokens_details.cached_tokens == 10
    served = emu.served
    assert (served.requests, served.prompt_tokens, served.completion_tokens, served.cached_tokens) == (
        1,
        30,
        7,
        10,
    )


def test_chat_stream_wire_framing(emu: OpenAIEmulator) -> None:
    body = {"model": "m", "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}}
    status, headers, raw = raw_post(emu, "/v1/chat/completions", body)

    assert status == 200
    assert headers["content-type"].startswith("text/event-stream")
    assert headers["transfer-encoding"] == "chunked"
    assert raw.endswith(b"data: [DONE]\n\n")
    data = sse_data(raw)
    assert data[-1] == "[DONE]"
    assert json.loads(data[-2])["choices"] == []
    first = json.loads(data[0])
    assert first["object"] == "chat.completion.chunk"
    assert first["choices"][0]["delta"] == {
        "role": "assistant",
        "content": first["choices"][0]["delta"]["content"],
        "refusal": None,
    }


def test_usage_in_stream_overrides_the_request(emu: OpenAIEmulator, api: Api) -> None:
    emu.push(Reply(usage_in_stream=True), Reply(usage_in_stream=False))
    forced = api.stream("chat.completions.create", model="m", messages=MESSAGES)
    suppressed = api.stream(
        "chat.completions.create", model="m", messages=MESSAGES, stream_options={"include_usage": True}
    )

    assert forced[-1].usage is not None and forced[-1].choices == []
    assert all(c.usage is None for c in suppressed)
    assert len(suppressed) == 3


def test_fifty_chunk_stream(emu: OpenAIEmulator, api: Api) -> None:
    text = " ".join(f"w{i}" for i in range(80))
    emu.push(Reply(text=text, chunks=50))
    chunks = api.stream(
        "chat.completions.create", model="m", messages=MESSAGES, stream_options={"include_usage": True}
    )

    assert len(chunks) == 51
    assert "".join(c.choices[0].delta.content or "" for c in chunks[:-1]) == text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 80


def test_chat_parse_with_json_schema(emu: OpenAIEmulator, api: Api) -> None:
    class Weather(BaseModel):
        city: str
        celsius: int

    emu.push(Reply(text='{"city": "Paris", "celsius": 21}'))
    completion = api.call(
        "chat.completions.parse", model="gpt-4o", messages=MESSAGES, response_format=Weather
    )

    assert completion.choices[0].message.parsed == Weather(city="Paris", celsius=21)
    assert emu.requests[0].json["response_format"]["type"] == "json_schema"


def test_omit_usage_and_cost(emu: OpenAIEmulator, api: Api) -> None:
    emu.push(Reply(omit_usage=True), Reply(omit_usage=True), Reply(cost=0.00123))
    bare = api.call("chat.completions.create", model="m", messages=MESSAGES)
    stream = api.stream(
        "chat.completions.create", model="m", messages=MESSAGES, stream_options={"include_usage": True}
    )
    priced = api.call("chat.completions.create", model="m", messages=MESSAGES)

    assert bare.usage is None
    assert all(c.usage is None for c in stream) and all(c.choices for c in stream)
    assert priced.usage is not None
    assert priced.usage.to_dict()["cost"] == 0.00123
    served = emu.served
    assert served.requests == 3
    assert served.prompt_tokens == priced.usage.prompt_tokens


# --- responses --------------------------------------------------------------------------------------


def test_responses_json(emu: OpenAIEmulator, api: Api) -> None:
    emu.push(
        Reply(text="A reply.", prompt_tokens=50, completion_tokens=20, cached_tokens=12, reasoning_tokens=8)
    )
    response = api.call("responses.create", model="gpt-4.1", input="Hello", instructions="Be brief.")

    assert isinstance(response, openai.types.responses.Response)
    assert response.id.startswith("resp_")
    assert response.object == "response"
    assert response.status == "completed"
    assert response.model == "gpt-4.1"
    assert response.instructions == "Be brief."
    assert response.output_text == "A reply."
    message = response.output[0]
    assert message.type == "message" and message.role == "assistant" and message.status == "completed"
    usage = response.usage
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (50, 20, 70)
    assert usage.input_tokens_details.cached_tokens == 12
    assert usage.output_tokens_details.reasoning_tokens == 8
    served = emu.served
    assert (
        served.prompt_tokens,
        served.completion_tokens,
        served.cached_tokens,
        served.reasoning_tokens,
    ) == (
        50,
        20,
        12,
        8,
    )


def test_responses_stream_events(emu: OpenAIEmulator, api: Api) -> None:
    emu.push(Reply(text="alpha beta gamma delta", chunks=4, prompt_tokens=11, completion_tokens=4))
    events = api.stream("responses.create", model="gpt-4.1", input="Hi")

    assert [e.type for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 4,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].response.status == "in_progress" and events[0].response.usage is None
    assert (
        "".join(e.delta for e in events if e.type == "response.output_text.delta") == "alpha beta gamma delta"
    )
    completed = events[-1]
    assert completed.response.id == events[0].response.id
    assert completed.response.output_text == "alpha beta gamma delta"
    assert completed.response.usage is not None
    assert (completed.response.usage.input_tokens, completed.response.usage.output_tokens) == (11, 4)
    assert emu.served.prompt_tokens == 11


def test_responses_stream_wire_framing(emu: OpenAIEmulator) -> None:
    status, _, raw = raw_post(emu, "/v1/responses", {"model": "m", "input": "x", "stream": True})

    assert status == 200
    frames = raw.decode().split("\n\n")
    assert frames[-1] == ""
    for frame in frames[:-1]:
        event_line, data_line = frame.split("\n")
        event = event_line.removeprefix("event: ")
        assert json.loads(data_line.removeprefix("data: "))["type"] == event
    assert "[DONE]" not in raw.decode()


def test_responses_stream_helper_final_response(emu: OpenAIEmulator, mode: Mode) -> None:
    emu.push(Reply(text="final text", prompt_tokens=9, completion_tokens=2))
    if mode == "sync":
        client = OpenAI(base_url=emu.base_url, api_key="k", max_retries=0)
        with client, client.responses.stream(model="m", input="x") as stream:
            types: list[str] = [event.type for event in stream]
            final: Any = stream.get_final_response()
    else:

        async def main() -> tuple[list[str], Any]:
            client = AsyncOpenAI(base_url=emu.base_url, api_key="k", max_retries=0)
            async with client, client.responses.stream(model="m", input="x") as stream:
                seen: list[str] = [event.type async for event in stream]
                return seen, await stream.get_final_response()

        types, final = asyncio.run(main())

    assert types[-1] == "response.completed"
    assert final.output_text == "final text"
    assert final.usage.input_tokens == 9 and final.usage.output_tokens == 2


def test_responses_finish_length_is_incomplete(emu: OpenAIEmulator, api: Api) -> None:
    emu.push(Reply(finish_reason="length"), Reply(finish_reason="length"))
    response = api.call("responses.create", model="m", input="x")
    events = api.stream("responses.create", model="m", input="x")

    assert response.status == "incomplete"
    assert response.incomplete_details.reason == "max_output_tokens"
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.usage is not None


# --- embeddings and legacy completions --------------------------------------------------------------


def test_embeddings_base64_default_and_float(emu: OpenAIEmulator, api: Api) -> None:
    emu.push(Reply(prompt_tokens=6), Reply(prompt_tokens=6))
    default = api.call(
        "embeddings.create", model="text-embedding-3-small", input=["first", "second", "third"]
    )
    floats = api.call(
        "embeddings.create",
        model="text-embedding-3-small",
        input=["first", "second", "third"],
        encoding_format="float",
    )

    assert emu.requests[0].json["encoding_format"] == "base64"
    assert emu.requests[1].json["encoding_format"] == "float"
    assert default.object == "list" and default.model == "text-embedding-3-small"
    assert [d.index for d in default.data] == [0, 1, 2]
    assert all(isinstance(x, float) for x in default.data[0].embedding)
    assert [d.embedding for d in default.data] == [d.embedding for d in floats.data]
    assert default.data[0].embedding != default.data[1].embedding
    assert (default.usage.prompt_tokens, default.usage.total_tokens) == (6, 6)
    assert emu.served.prompt_tokens == 12 and emu.served.completion_tokens == 0


def test_embeddings_wire_is_little_endian_float32(emu: OpenAIEmulator) -> None:
    body = {"model": "e", "input": "one string", "encoding_format": "base64", "dimensions": 5}
    _, _, raw = raw_post(emu, "/v1/embeddings", body)
    encoded = json.loads(raw)["data"][0]["embedding"]
    _, _, raw_float = raw_post(emu, "/v1/embeddings", {**body, "encoding_format": "float"})

    assert isinstance(encoded, str)
    decoded = list(struct.unpack("<5f", base64.b64decode(encoded)))
    assert decoded == json.loads(raw_float)["data"][0]["embedding"]
    assert len(json.loads(raw)["data"]) == 1


def test_legacy_completions_json_and_stream(emu: OpenAIEmulator, api: Api) -> None:
    emu.push(
        Reply(text="legacy text here", prompt_tokens=4, completion_tokens=3), Reply(text="abc def", chunks=2)
    )
    completion = api.call("completions.create", model="gpt-3.5-turbo-instruct", prompt="Say")
    chunks = api.stream(
        "completions.create",
        model="gpt-3.5-turbo-instruct",
        prompt="Say",
        stream_options={"include_usage": True},
    )

    assert completion.object == "text_completion" and completion.id.startswith("cmpl-")
    assert completion.choices[0].text == "legacy text here"
    assert completion.usage is not None and completion.usage.total_tokens == 7
    assert len(chunks) == 3
    assert "".join(c.choices[0].text for c in chunks[:2]) == "abc def"
    assert chunks[1].choices[0].finish_reason == "stop"
    assert chunks[2].choices == [] and chunks[2].usage is not None


# --- errors and faults ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error", "type_", "code"),
    [
        (400, openai.BadRequestError, "invalid_request_error", None),
        (401, openai.AuthenticationError, "authentication_error", "invalid_api_key"),
        (429, openai.RateLimitError, "requests", "rate_limit_exceeded"),
        (500, openai.InternalServerError, "server_error", None),
        (503, openai.InternalServerError, "server_error", "service_unavailable"),
    ],
)
def test_error_statuses_raise_sdk_errors(
    emu: OpenAIEmulator,
    api: Api,
    status: int,
    error: type[openai.APIStatusError],
    type_: str,
    code: str | None,
) -> None:
    emu.push(Reply(status=status))
    with pytest.raises(error) as caught:
        api.call("chat.completions.create", model="gpt-4o", messages=MESSAGES)

    assert caught.value.status_code == status
    assert caught.value.type == type_
    assert caught.value.code == code
    body = caught.value.body
    assert isinstance(body, dict)
    assert list(body) == ["message", "type", "param", "code"]
    assert body["message"] and body["type"] == type_ and body["param"] is None and body["code"] == code
    assert "retry-after" not in caught.value.response.headers
    assert len(emu.requests) == 1
    assert emu.served.requests == 1 and emu.served.prompt_tokens == 0


def test_error_fields_can_be_scripted_and_apply_to_streams(emu: OpenAIEmulator, api: Api) -> None:
    emu.push(
        Reply(
            status=429, error_type="insufficient_quota", error_code="insufficient_quota", message="No credit."
        )
    )
    with pytest.raises(openai.RateLimitError) as caught:
        api.stream("chat.completions.create", model="m", messages=MESSAGES)

    assert caught.value.body == {
        "message": "No credit.",
        "type": "insufficient_quota",
        "param": None,
        "code": "insufficient_quota",
    }


def test_cut_stream_raises_after_first_chunks(emu: OpenAIEmulator, api: Api) -> None:
    emu.push(Reply(chunks=6, cut_after=2))
    chunks, error = api.drain(
        "chat.completions.create", model="m", messages=MESSAGES, stream_options={"include_usage": True}
    )

    assert len(chunks) == 2
    assert isinstance(error, STREAM_ERRORS)
    served = emu.served
    assert served.requests == 1 and served.prompt_tokens == 0 and served.completion_tokens == 0


def test_cut_stream_after_usage_counts_usage(emu: OpenAIEmulator, api: Api) -> None:
    # Events: two content chunks, the usage chunk, then [DONE]; the cut drops [DONE] and the stream end.
    emu.push(Reply(chunks=2, cut_after=3, prompt_tokens=13, completion_tokens=5))
    chunks, error = api.drain(
        "chat.completions.create", model="m", messages=MESSAGES, stream_options={"include_usage": True}
    )

    assert isinstance(error, STREAM_ERRORS)
    assert chunks[-1].usage is not None
    assert (emu.served.prompt_tokens, emu.served.completion_tokens) == (13, 5)


def test_cut_responses_stream(emu: OpenAIEmulator, api: Api) -> None:
    emu.push(Reply(cut_after=5))
    events, error = api.drain("responses.create", model="m", input="x")

    assert isinstance(error, STREAM_ERRORS)
    assert [e.type for e in events][-1] == "response.output_text.delta"
    assert len(events) == 5
    assert emu.served.prompt_tokens == 0


def test_raw_usage_is_sent_verbatim(emu: OpenAIEmulator, api: Api) -> None:
    raw_usage = {"prompt_tokens": "12", "completion_tokens": -3, "total_tokens": None, "weird": [1]}
    emu.push(Reply(raw_usage=raw_usage))
    _, _, raw = raw_post(emu, "/v1/chat/completions", {"model": "m", "messages": MESSAGES})
    emu.push(Reply(raw_usage={"input_tokens": 7, "output_tokens": "x"}))
    response = api.call("responses.create", model="m", input="x")

    assert json.loads(raw)["usage"] == raw_usage
    assert response.usage.to_dict(warnings=False) == {"input_tokens": 7, "output_tokens": "x"}
    served = emu.served
    assert (served.requests, served.prompt_tokens, served.completion_tokens) == (2, 7, 0)


def test_unknown_path_and_bad_body(emu: OpenAIEmulator) -> None:
    status, _, raw = raw_post(emu, "/v1/nope", {})
    assert status == 404
    assert json.loads(raw) == {
        "error": {
            "message": "Invalid URL (POST /v1/nope)",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
    status, _, raw = raw_post(emu, "/v1/chat/completions", {"messages": MESSAGES})
    assert status == 400 and json.loads(raw)["error"]["type"] == "invalid_request_error"
    assert emu.served.requests == 0


def test_models_list(api: Api) -> None:
    page = api.call("models.list")
    assert "gpt-4o-mini" in [model.id for model in page.data]
    assert all(model.object == "model" for model in page.data)


# --- azure, recording, scripting --------------------------------------------------------------------


def test_azure_client_paths(emu: OpenAIEmulator, mode: Mode) -> None:
    azure = Api(emu, mode, azure=True)
    chat = azure.call("chat.completions.create", model="my-deployment", messages=MESSAGES)
    chunks = azure.stream(
        "chat.completions.create",
        model="my-deployment",
        messages=MESSAGES,
        stream_options={"include_usage": True},
    )
    vectors = azure.call("embeddings.create", model="embed-deployment", input="x")
    response = azure.call("responses.create", model="resp-deployment", input="x")

    assert chat.model == "my-deployment" and chat.usage is not None
    assert chunks[-1].usage is not None
    assert len(vectors.data) == 1
    assert response.model == "resp-deployment" and response.usage is not None
    requests = emu.requests
    assert [r.path for r in requests] == [
        "/openai/deployments/my-deployment/chat/completions",
        "/openai/deployments/my-deployment/chat/completions",
        "/openai/deployments/embed-deployment/embeddings",
        "/openai/responses",
    ]
    assert all(r.query == {"api-version": API_VERSION} for r in requests)
    assert all(r.headers["api-key"] == "k" for r in requests)


def test_azure_deployment_names_the_model_when_body_has_none(emu: OpenAIEmulator) -> None:
    status, _, raw = raw_post(
        emu, "/openai/deployments/dep-x/chat/completions?api-version=1", {"messages": MESSAGES}
    )
    assert status == 200 and json.loads(raw)["model"] == "dep-x"
    status, _, raw = raw_post(emu, "/openai/v1/chat/completions", {"model": "v1-model", "messages": MESSAGES})
    assert status == 200 and json.loads(raw)["model"] == "v1-model"


def test_requests_are_recorded(emu: OpenAIEmulator, api: Api) -> None:
    api.call(
        "chat.completions.create",
        model="gpt-4o-mini",
        messages=MESSAGES,
        temperature=0.5,
        extra_query={"trace": "yes"},
        extra_headers={"X-Custom": "Value"},
    )

    (recorded,) = emu.requests
    assert recorded.method == "POST"
    assert recorded.path == "/v1/chat/completions"
    assert recorded.query == {"trace": "yes"}
    assert recorded.headers["authorization"] == "Bearer k"
    assert recorded.headers["x-custom"] == "Value"
    assert all(name == name.lower() for name in recorded.headers)
    assert recorded.json == {"model": "gpt-4o-mini", "messages": MESSAGES, "temperature": 0.5}


def test_default_reply_when_queue_is_empty(emu: OpenAIEmulator, api: Api) -> None:
    first = api.call("chat.completions.create", model="gpt-4o-mini", messages=MESSAGES)
    second = api.call("chat.completions.create", model="gpt-4o-mini", messages=MESSAGES)

    assert first.choices[0].message.content == DEFAULT_TEXT
    assert first.model == "gpt-4o-mini"
    assert first.id != second.id
    assert first.usage is not None and second.usage is not None
    assert first.usage.prompt_tokens == second.usage.prompt_tokens == 8 + len(json.dumps(MESSAGES)) // 4
    assert first.usage.completion_tokens == len(DEFAULT_TEXT.split())


def test_replies_are_consumed_in_order_and_reset_clears(emu: OpenAIEmulator, api: Api) -> None:
    emu.push(Reply(text="first"), Reply(text="second"), Reply(text="never"))
    texts = [
        api.call("chat.completions.create", model="m", messages=MESSAGES).choices[0].message.content
        for _ in range(2)
    ]
    emu.reset()
    after = api.call("chat.completions.create", model="m", messages=MESSAGES)

    assert texts == ["first", "second"]
    assert after.choices[0].message.content == DEFAULT_TEXT
    assert len(emu.requests) == 1 and emu.served.requests == 1


def test_served_totals_sum_across_kinds(emu: OpenAIEmulator, api: Api) -> None:
    emu.push(
        Reply(prompt_tokens=10, completion_tokens=1, cached_tokens=2, reasoning_tokens=1),
        Reply(prompt_tokens=20, completion_tokens=2),
        Reply(prompt_tokens=30, completion_tokens=3, cached_tokens=5),
        Reply(prompt_tokens=40),
        Reply(status=500, prompt_tokens=1000),
    )
    api.call("chat.completions.create", model="m", messages=MESSAGES)
    api.stream(
        "chat.completions.create", model="m", messages=MESSAGES, stream_options={"include_usage": True}
    )
    api.stream("responses.create", model="m", input="x")
    api.call("embeddings.create", model="e", input="x")
    with pytest.raises(openai.InternalServerError):
        api.call("chat.completions.create", model="m", messages=MESSAGES)

    served = emu.served
    assert served.requests == 5
    assert served.prompt_tokens == 100
    assert served.completion_tokens == 6
    assert served.cached_tokens == 7
    assert served.reasoning_tokens == 1


def test_concurrent_requests_are_all_counted(emu: OpenAIEmulator) -> None:
    def one(index: int) -> int:
        with OpenAI(base_url=emu.base_url, api_key="k", max_retries=0) as client:
            stream = index % 2 == 0
            if stream:
                chunks = list(
                    client.chat.completions.create(
                        model="m", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
                    )
                )
                usage = chunks[-1].usage
            else:
                usage = client.chat.completions.create(model="m", messages=MESSAGES).usage
            assert usage is not None
            return usage.prompt_tokens

    emu.push(*[Reply(prompt_tokens=i + 1) for i in range(24)])
    with ThreadPoolExecutor(max_workers=8) as pool:
        prompts = list(pool.map(one, range(24)))

    assert sorted(prompts) == list(range(1, 25))
    assert emu.served.requests == 24
    assert emu.served.prompt_tokens == sum(range(1, 25))


def test_delays_are_applied(emu: OpenAIEmulator, api: Api) -> None:
    emu.push(Reply(delay_s=0.2), Reply(chunks=4, chunk_delay_s=0.05))
    started = time.monotonic()
    api.call("chat.completions.create", model="m", messages=MESSAGES)
    after_first = time.monotonic()
    api.stream("chat.completions.create", model="m", messages=MESSAGES)
    finished = time.monotonic()

    assert after_first - started >= 0.2
    assert finished - after_first >= 0.15


# --- lifecycle and robustness -----------------------------------------------------------------------


def test_start_stop_without_context_manager() -> None:
    emu = OpenAIEmulator().start()
    try:
        assert emu.base_url == f"http://127.0.0.1:{emu.port}/v1"
        assert emu.azure_endpoint == f"http://127.0.0.1:{emu.port}"
        with OpenAI(base_url=emu.base_url, api_key="k", max_retries=0) as client:
            assert client.chat.completions.create(model="m", messages=MESSAGES).choices
    finally:
        emu.stop()
    assert not emu.running


def test_keep_alive_connection_serves_json_and_streams_in_turn(emu: OpenAIEmulator) -> None:
    with OpenAI(base_url=emu.base_url, api_key="k", max_retries=0) as client:
        for _ in range(3):
            assert client.chat.completions.create(model="m", messages=MESSAGES).usage is not None
            chunks = list(client.chat.completions.create(model="m", messages=MESSAGES, stream=True))
            assert chunks[-1].choices[0].finish_reason == "stop"
            events = list(client.responses.create(model="m", input="x", stream=True))
            assert events[-1].type == "response.completed"
    assert emu.served.requests == 9


def test_client_disconnect_mid_stream_leaves_server_healthy(
    emu: OpenAIEmulator, capfd: pytest.CaptureFixture[str]
) -> None:
    emu.push(Reply(text=" ".join(["word"] * 200), chunks=50, chunk_delay_s=0.01))
    with OpenAI(base_url=emu.base_url, api_key="k", max_retries=0) as client:
        stream = client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        iterator = iter(stream)
        next(iterator)
        next(iterator)
        stream.response.close()
        stream.close()
    with OpenAI(base_url=emu.base_url, api_key="k", max_retries=0) as client:
        assert client.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content
    started = time.monotonic()
    emu.stop()
    assert time.monotonic() - started < 1.5
    assert "Traceback" not in capfd.readouterr().err


def test_stop_is_prompt_with_open_connections() -> None:
    emu = OpenAIEmulator().start()
    client = OpenAI(base_url=emu.base_url, api_key="k", max_retries=0)
    try:
        client.chat.completions.create(model="m", messages=MESSAGES)
        emu.push(Reply(chunks=50, chunk_delay_s=0.5))
        stream = client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        iterator = iter(stream)
        next(iterator)
        started = time.monotonic()
        emu.stop()
        assert time.monotonic() - started < 1.0
        with pytest.raises(STREAM_ERRORS):
            list(iterator)
    finally:
        client.close()
        emu.stop()


# --- stream_options: accepted, ignored or refused ------------------------------------------------


def _stream_with_usage(server: OpenAIEmulator) -> list[Any]:
    client = OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
    return list(
        client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )


def test_ignoring_server_sends_no_usage_however_asked() -> None:
    with OpenAIEmulator(stream_options="ignore") as server:
        server.push(Reply(prompt_tokens=10, completion_tokens=2, chunks=2))
        chunks = _stream_with_usage(server)
        assert len(chunks) == 2 and all(chunk.usage is None for chunk in chunks)
        assert "usage" not in chunks[0].model_fields_set
        assert server.requests[-1].json["stream_options"] == {"include_usage": True}
        assert server.served.prompt_tokens == 0 and server.served.requests == 1


def test_refusing_server_answers_400_in_openai_shape() -> None:
    with OpenAIEmulator(stream_options="reject") as server:
        server.push(Reply(prompt_tokens=10))
        with pytest.raises(openai.BadRequestError) as raised:
            _stream_with_usage(server)
        assert raised.value.body == {
            "message": "Unknown parameter: 'stream_options'.",
            "type": "invalid_request_error",
            "param": "stream_options",
            "code": "unknown_parameter",
        }
        assert server.pending == 1  # refused before a reply was taken
        client = OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
        chunks = list(client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))
        assert chunks and server.pending == 0 and server.served.requests == 2


def test_refusing_server_answers_422_with_an_extra_forbidden_detail() -> None:
    with OpenAIEmulator(stream_options="reject_422") as server:
        with pytest.raises(openai.UnprocessableEntityError) as raised:
            _stream_with_usage(server)
        detail = raised.value.response.json()["detail"][0]
        assert detail["type"] == "extra_forbidden" and detail["loc"] == ["body", "stream_options"]


def test_stream_options_mode_is_checked_and_created_can_be_fixed() -> None:
    with pytest.raises(ValueError, match="stream_options"):
        OpenAIEmulator(stream_options="sometimes")  # type: ignore[arg-type]
    with OpenAIEmulator() as server:
        server.push(Reply(created=1234))
        client = OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
        assert client.chat.completions.create(model="gpt-4o", messages=MESSAGES).created == 1234
