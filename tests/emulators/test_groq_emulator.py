"""The Groq emulator, driven by the real groq SDK (sync and async) with no instrumentation."""

from __future__ import annotations

import asyncio
import http.client
import json
from collections.abc import Iterator
from typing import Any, Literal

import groq
import httpx
import pytest
from groq import AsyncGroq, Groq
from groq.types.chat import ChatCompletion, ChatCompletionChunk

from emulators import GroqEmulator, GroqReply
from emulators.groq import DEFAULT_TEXT

Mode = Literal["sync", "async"]
MESSAGES: list[Any] = [{"role": "user", "content": "Say something short."}]
MODEL = "llama-3.3-70b-versatile"
# A stream cut by the server: the SDK lets the transport error through, or wraps it.
STREAM_ERRORS = (groq.APIError, httpx.TransportError)


@pytest.fixture
def emu() -> Iterator[GroqEmulator]:
    with GroqEmulator() as server:
        yield server


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> Mode:
    value: Mode = request.param
    return value


class Api:
    """Runs one chat completion through a fresh sync or async client and drains streams inside it."""

    def __init__(self, emu: GroqEmulator, mode: Mode) -> None:
        self.emu = emu
        self.mode = mode

    def _run(self, kwargs: dict[str, Any], iterate: bool) -> tuple[Any, BaseException | None]:
        kwargs = {"model": MODEL, "messages": MESSAGES, **kwargs}
        items: list[Any] = []
        if self.mode == "sync":
            with Groq(base_url=self.emu.base_url, api_key="gsk_k", max_retries=0) as client:
                result = client.chat.completions.create(**kwargs)
                if not iterate:
                    return result, None
                try:
                    for item in result:
                        items.append(item)
                except Exception as exc:
                    return items, exc
                return items, None

        async def main() -> tuple[Any, BaseException | None]:
            async with AsyncGroq(base_url=self.emu.base_url, api_key="gsk_k", max_retries=0) as client:
                result = await client.chat.completions.create(**kwargs)
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
def api(emu: GroqEmulator, mode: Mode) -> Api:
    return Api(emu, mode)


def raw_request(
    emu: GroqEmulator, method: str, path: str, body: object = None
) -> tuple[int, dict[str, str], bytes]:
    """Send with the standard library, to see the exact bytes the SDK would parse."""
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=10)
    try:
        payload = None if body is None else json.dumps(body)
        conn.request(method, path, body=payload, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def sse_data(raw: bytes) -> list[str]:
    return [line[len("data: ") :] for line in raw.decode().split("\n") if line.startswith("data: ")]


# --- JSON --------------------------------------------------------------------------------------------


def test_chat_json_every_usage_detail(emu: GroqEmulator, api: Api) -> None:
    emu.push(
        GroqReply(
            text="Hello there.",
            model="openai/gpt-oss-120b",
            id="chatcmpl-fixed",
            prompt_tokens=2000,
            completion_tokens=800,
            cached_tokens=1536,
            reasoning_tokens=300,
        )
    )
    completion = api.call(model="openai/gpt-oss-120b")

    assert isinstance(completion, ChatCompletion)
    assert completion.id == "chatcmpl-fixed"
    assert completion.object == "chat.completion"
    assert completion.model == "openai/gpt-oss-120b"
    assert completion.system_fingerprint
    assert completion.x_groq is not None and completion.x_groq.id.startswith("req_")
    choice = completion.choices[0]
    assert (choice.message.role, choice.message.content, choice.finish_reason) == (
        "assistant",
        "Hello there.",
        "stop",
    )
    usage = completion.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (2000, 800, 2800)
    assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens == 1536
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 300
    assert usage.queue_time is not None and usage.queue_time > 0
    assert usage.total_time == pytest.approx((usage.prompt_time or 0) + (usage.completion_time or 0))
    served = emu.served
    assert (served.requests, served.prompt_tokens, served.completion_tokens) == (1, 2000, 800)
    assert (served.cached_tokens, served.reasoning_tokens) == (1536, 300)


def test_chat_json_wire_shape(emu: GroqEmulator) -> None:
    status, headers, raw = raw_request(
        emu, "POST", "/openai/v1/chat/completions", {"model": MODEL, "messages": MESSAGES}
    )

    assert status == 200
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(raw)
    assert headers["x-request-id"].startswith("req_")
    assert headers["x-ratelimit-limit-tokens"] and headers["x-ratelimit-remaining-requests"]
    body = json.loads(raw)
    assert list(body) == [
        "id",
        "object",
        "created",
        "model",
        "choices",
        "usage",
        "usage_breakdown",
        "system_fingerprint",
        "x_groq",
        "service_tier",
    ]
    assert body["id"].startswith("chatcmpl-")
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": DEFAULT_TEXT},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    # No cache hit and no reasoning: Groq sends no details, only counts and timings.
    assert list(body["usage"]) == [
        "queue_time",
        "prompt_tokens",
        "prompt_time",
        "completion_tokens",
        "completion_time",
        "total_tokens",
        "total_time",
    ]
    assert body["x_groq"]["id"] == headers["x-request-id"]
    assert body["service_tier"] == "on_demand" and body["usage_breakdown"] is None


def test_default_reply_when_queue_is_empty(emu: GroqEmulator, api: Api) -> None:
    first = api.call()
    second = api.call()

    assert first.choices[0].message.content == DEFAULT_TEXT
    assert first.model == MODEL
    assert first.id != second.id
    assert first.usage.prompt_tokens == second.usage.prompt_tokens == 8 + len(json.dumps(MESSAGES)) // 4
    assert first.usage.completion_tokens == len(DEFAULT_TEXT.split())


def test_omit_and_raw_usage(emu: GroqEmulator, api: Api) -> None:
    raw_usage = {"prompt_tokens": "12", "completion_tokens": 5, "total_tokens": None, "weird": [1]}
    emu.push(GroqReply(omit_usage=True), GroqReply(raw_usage=raw_usage), GroqReply(omit_usage=True))
    omitted = api.call()
    _, _, raw = raw_request(emu, "POST", "/openai/v1/chat/completions", {"model": "m", "messages": MESSAGES})
    chunks = api.stream()

    assert omitted.usage is None
    assert json.loads(raw)["usage"] == raw_usage
    assert chunks[-1].x_groq.usage is None and chunks[-1].x_groq.id.startswith("req_")
    served = emu.served
    assert (served.requests, served.prompt_tokens, served.completion_tokens) == (3, 0, 5)


# --- streams -----------------------------------------------------------------------------------------


def test_stream_carries_usage_in_x_groq(emu: GroqEmulator, api: Api) -> None:
    emu.push(GroqReply(text="one two three four five six", chunks=3, prompt_tokens=30, completion_tokens=7))
    chunks = api.stream()

    assert len(chunks) == 3 + 2
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    assert len({c.id for c in chunks}) == 1
    opening, *content, closing = chunks
    assert opening.choices[0].delta.role == "assistant" and opening.choices[0].delta.content == ""
    assert (
        opening.x_groq is not None and opening.x_groq.id.startswith("req_") and opening.x_groq.usage is None
    )
    assert all(c.x_groq is None and c.choices[0].finish_reason is None for c in content)
    assert "".join(c.choices[0].delta.content or "" for c in content) == "one two three four five six"
    assert closing.choices[0].finish_reason == "stop" and closing.choices[0].delta.content is None
    assert closing.x_groq is not None and closing.x_groq.id == opening.x_groq.id
    assert closing.x_groq.usage is not None
    assert (closing.x_groq.usage.prompt_tokens, closing.x_groq.usage.completion_tokens) == (30, 7)
    assert all(c.usage is None and "usage" not in c.to_dict() for c in chunks)
    served = emu.served
    assert (served.requests, served.prompt_tokens, served.completion_tokens) == (1, 30, 7)


def test_stream_with_include_usage_repeats_it_on_the_closing_chunk(emu: GroqEmulator, api: Api) -> None:
    emu.push(GroqReply(chunks=2, prompt_tokens=40, completion_tokens=9, cached_tokens=32))
    chunks = api.stream(extra_body={"stream_options": {"include_usage": True}})

    assert len(chunks) == 2 + 2
    closing = chunks[-1]
    assert closing.choices and closing.choices[0].finish_reason == "stop"
    assert closing.usage is not None and closing.x_groq is not None and closing.x_groq.usage is not None
    assert closing.usage.to_dict() == closing.x_groq.usage.to_dict()
    assert closing.usage.prompt_tokens_details is not None
    assert closing.usage.prompt_tokens_details.cached_tokens == 32
    assert all(c.usage is None for c in chunks[:-1])
    served = emu.served  # the usage is counted once, though sent twice
    assert (served.prompt_tokens, served.completion_tokens, served.cached_tokens) == (40, 9, 32)


def test_usage_in_stream_overrides_the_request(emu: GroqEmulator, api: Api) -> None:
    emu.push(GroqReply(usage_in_stream=True), GroqReply(usage_in_stream=False))
    forced = api.stream()
    suppressed = api.stream(extra_body={"stream_options": {"include_usage": True}})

    assert forced[-1].usage is not None
    assert all(c.usage is None for c in suppressed)
    assert suppressed[-1].x_groq.usage is not None


def test_stream_wire_framing(emu: GroqEmulator) -> None:
    body = {"model": "m", "messages": MESSAGES, "stream": True}
    status, headers, raw = raw_request(emu, "POST", "/openai/v1/chat/completions", body)

    assert status == 200
    assert headers["content-type"].startswith("text/event-stream")
    assert headers["transfer-encoding"] == "chunked"
    assert raw.endswith(b"data: [DONE]\n\n")
    data = sse_data(raw)
    assert data[-1] == "[DONE]"
    closing = json.loads(data[-2])
    assert list(closing) == ["id", "object", "created", "model", "system_fingerprint", "choices", "x_groq"]
    assert closing["choices"] == [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]
    assert list(closing["x_groq"]) == ["id", "usage"]
    opening = json.loads(data[0])
    assert opening["object"] == "chat.completion.chunk"
    assert opening["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert list(opening["x_groq"]) == ["id", "seed"]


def test_cut_stream_raises_after_first_chunks(emu: GroqEmulator, api: Api) -> None:
    emu.push(GroqReply(chunks=6, cut_after=2))
    chunks, error = api.drain()

    assert len(chunks) == 2
    assert isinstance(error, STREAM_ERRORS)
    served = emu.served
    assert served.requests == 1 and served.prompt_tokens == 0 and served.completion_tokens == 0


def test_cut_stream_after_the_closing_chunk_counts_usage(emu: GroqEmulator, api: Api) -> None:
    # Events: opening, 2 content chunks, closing (usage), [DONE]; the cut drops [DONE] and the stream end.
    emu.push(GroqReply(chunks=2, cut_after=4, prompt_tokens=13, completion_tokens=5))
    chunks, error = api.drain()

    assert isinstance(error, STREAM_ERRORS)
    assert chunks[-1].x_groq.usage is not None
    assert (emu.served.prompt_tokens, emu.served.completion_tokens) == (13, 5)


# --- errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error", "type_", "code"),
    [
        (400, groq.BadRequestError, "invalid_request_error", None),
        (401, groq.AuthenticationError, "invalid_request_error", "invalid_api_key"),
        (404, groq.NotFoundError, "invalid_request_error", "model_not_found"),
        (413, groq.APIStatusError, "tokens", "rate_limit_exceeded"),
        (429, groq.RateLimitError, "tokens", "rate_limit_exceeded"),
        (500, groq.InternalServerError, "internal_server_error", None),
        (503, groq.InternalServerError, "internal_server_error", "service_unavailable"),
    ],
)
def test_error_statuses_raise_sdk_errors(
    emu: GroqEmulator, api: Api, status: int, error: type[groq.APIStatusError], type_: str, code: str | None
) -> None:
    emu.push(GroqReply(status=status))
    with pytest.raises(error) as caught:
        api.call()

    assert caught.value.status_code == status
    body = caught.value.body
    assert isinstance(body, dict) and list(body) == ["error"]
    expected_keys = ["message", "type"] if code is None else ["message", "type", "code"]
    assert list(body["error"]) == expected_keys
    assert body["error"]["message"] and body["error"]["type"] == type_ and body["error"].get("code") == code
    headers = caught.value.response.headers
    assert ("retry-after" in headers) == (status == 429)
    if status in (404, 413, 429):
        assert f"`{MODEL}`" in body["error"]["message"]
    assert len(emu.requests) == 1
    assert emu.served.requests == 1 and emu.served.prompt_tokens == 0


def test_error_fields_can_be_scripted_and_apply_to_streams(emu: GroqEmulator, api: Api) -> None:
    emu.push(
        GroqReply(status=429, error_type="requests", error_code="rate_limit_exceeded", message="Slow down.")
    )
    with pytest.raises(groq.RateLimitError) as caught:
        api.stream()

    assert caught.value.body == {
        "error": {"message": "Slow down.", "type": "requests", "code": "rate_limit_exceeded"}
    }
    assert caught.value.response.headers["retry-after"] == "3"


def test_unknown_path_bad_body_and_missing_model(emu: GroqEmulator) -> None:
    status, _, raw = raw_request(emu, "POST", "/openai/v1/nope", {})
    assert status == 404
    assert json.loads(raw)["error"]["code"] == "unknown_url"
    status, _, raw = raw_request(emu, "POST", "/openai/v1/chat/completions", {"messages": MESSAGES})
    assert status == 400 and json.loads(raw)["error"]["type"] == "invalid_request_error"
    status, _, raw = raw_request(emu, "POST", "/openai/v1/chat/completions", [1, 2])
    assert status == 400
    assert emu.served.requests == 0


def test_models_list(emu: GroqEmulator, mode: Mode) -> None:
    if mode == "sync":
        with Groq(base_url=emu.base_url, api_key="gsk_k", max_retries=0) as client:
            page = client.models.list()
    else:

        async def main() -> Any:
            async with AsyncGroq(base_url=emu.base_url, api_key="gsk_k", max_retries=0) as client:
                return await client.models.list()

        page = asyncio.run(main())
    ids = [model.id for model in page.data]
    assert MODEL in ids and "openai/gpt-oss-120b" in ids
    assert emu.served.requests == 0


# --- recording and scripting -------------------------------------------------------------------------


def test_requests_are_recorded(emu: GroqEmulator, api: Api) -> None:
    api.call(temperature=0.5, extra_headers={"X-Custom": "Value"}, extra_query={"trace": "yes"})

    (recorded,) = emu.requests
    assert recorded.method == "POST"
    assert recorded.path == "/openai/v1/chat/completions"
    assert recorded.query == {"trace": "yes"}
    assert recorded.headers["authorization"] == "Bearer gsk_k"
    assert recorded.headers["x-custom"] == "Value"
    assert recorded.json == {"model": MODEL, "messages": MESSAGES, "temperature": 0.5}


def test_replies_are_consumed_in_order_and_reset_clears(emu: GroqEmulator, api: Api) -> None:
    emu.push(GroqReply(text="first"), GroqReply(text="second"), GroqReply(text="never"))
    texts = [api.call().choices[0].message.content for _ in range(2)]
    assert emu.pending == 1
    emu.reset()
    after = api.call()

    assert texts == ["first", "second"]
    assert after.choices[0].message.content == DEFAULT_TEXT
    assert len(emu.requests) == 1 and emu.served.requests == 1 and emu.pending == 0
