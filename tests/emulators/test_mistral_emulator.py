"""The Mistral emulator, driven by the real mistralai SDK (sync and async) with no instrumentation."""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from mistralai.client import Mistral, errors

from emulators import MistralEmulator, MistralReply
from emulators.mistral import DEFAULT_AGENT_MODEL, DEFAULT_TEXT

MSGS: list[Any] = [{"role": "user", "content": "What is the capital of France?"}]
API_KEY = "mistral-test-key"


# What a dropped stream raises from the SDK's HTTP client.
CUT_ERRORS = (httpx2.TransportError,)


@pytest.fixture(scope="module")
def _server() -> Iterator[MistralEmulator]:
    with MistralEmulator() as server:
        yield server


@pytest.fixture
def emu(_server: MistralEmulator) -> MistralEmulator:
    _server.reset()
    return _server


_clients: dict[int, Mistral] = {}


def client(emu: MistralEmulator) -> Mistral:
    """One sync client per emulator: building one loads TLS trust stores (~0.2 s)."""
    if emu.port not in _clients:
        _clients[emu.port] = Mistral(api_key=API_KEY, server_url=emu.server_url)
    return _clients[emu.port]


def aclient(emu: MistralEmulator) -> Mistral:
    """A new client for `async with`, which closes its async HTTP client on the way out."""
    return Mistral(api_key=API_KEY, server_url=emu.server_url)


def raw_post(
    emu: MistralEmulator, path: str, body: object, auth: bool = True
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(emu.host, emu.port, timeout=10)
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = f"Bearer {API_KEY}"
    try:
        conn.request("POST", path, body=json.dumps(body), headers=headers)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


# --- JSON replies ------------------------------------------------------------------------------


def test_chat_completion_json_shape(emu: MistralEmulator) -> None:
    emu.push(MistralReply(text="Paris.", prompt_tokens=12, completion_tokens=3, id="abc123"))
    status, headers, raw = raw_post(
        emu, "/v1/chat/completions", {"model": "mistral-small-latest", "messages": MSGS}
    )

    assert status == 200 and headers["content-type"] == "application/json"
    assert b": " not in raw and b", " not in raw  # compact, as the API sends it
    body = json.loads(raw)
    assert list(body) == ["id", "object", "model", "created", "choices", "usage"]
    assert body["id"] == "abc123" and body["object"] == "chat.completion"
    assert body["model"] == "mistral-small-latest"
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "tool_calls": None, "content": "Paris."},
            "finish_reason": "stop",
        }
    ]
    assert body["usage"] == {"prompt_tokens": 12, "total_tokens": 15, "completion_tokens": 3}
    assert len(headers["mistral-correlation-id"]) == 32


def test_sdk_parses_chat_completion_with_cached_tokens(emu: MistralEmulator) -> None:
    emu.push(MistralReply(text="Paris.", prompt_tokens=1013, completion_tokens=30, cached_tokens=1008))
    response = client(emu).chat.complete(model="mistral-large-2512", messages=MSGS)

    assert response.choices[0].message is not None and response.choices[0].message.content == "Paris."
    assert response.usage.prompt_tokens == 1013 and response.usage.completion_tokens == 30
    assert response.usage.total_tokens == 1043
    assert response.usage.model_extra == {"prompt_tokens_details": {"cached_tokens": 1008}}
    assert emu.served.cached_tokens == 1008


def test_older_num_cached_tokens_field(emu: MistralEmulator) -> None:
    emu.push(
        MistralReply(
            prompt_tokens=100, completion_tokens=5, cached_tokens=64, cache_field="num_cached_tokens"
        )
    )
    response = client(emu).chat.complete(model="m", messages=MSGS)
    assert response.usage.model_extra == {"num_cached_tokens": 64}
    assert emu.served.cached_tokens == 64


async def test_async_fim_agents_and_embeddings(emu: MistralEmulator) -> None:
    emu.push(
        MistralReply(text="return a + b", prompt_tokens=20, completion_tokens=4),
        MistralReply(text="Agent answer", prompt_tokens=30, completion_tokens=2),
        MistralReply(prompt_tokens=7),
    )
    async with aclient(emu) as c:
        fim = await c.fim.complete_async(model="codestral-latest", prompt="def add(a, b):", suffix="\n")
        agent = await c.agents.complete_async(agent_id="ag:123", messages=MSGS)
        vectors = await c.embeddings.create_async(model="mistral-embed", inputs=["one", "two", "three"])

    assert fim.model == "codestral-latest" and fim.choices[0].message is not None
    assert fim.choices[0].message.content == "return a + b"
    assert agent.model == DEFAULT_AGENT_MODEL and agent.usage.prompt_tokens == 30
    assert vectors.model == "mistral-embed" and [d.index for d in vectors.data] == [0, 1, 2]
    assert all(len(d.embedding or []) == 8 for d in vectors.data)
    assert vectors.usage.prompt_tokens == 7 and vectors.usage.completion_tokens == 0
    paths = [r.path for r in emu.requests]
    assert paths == ["/v1/fim/completions", "/v1/agents/completions", "/v1/embeddings"]
    assert emu.requests[1].json["agent_id"] == "ag:123" and "model" not in emu.requests[1].json
    assert emu.requests[2].json["input"] == ["one", "two", "three"]
    assert emu.served.requests == 3 and emu.served.prompt_tokens == 57 and emu.served.completion_tokens == 6


def test_embeddings_are_deterministic_unit_vectors(emu: MistralEmulator) -> None:
    c = client(emu)
    first = c.embeddings.create(model="mistral-embed", inputs="same text").data[0].embedding or []
    second = c.embeddings.create(model="mistral-embed", inputs="same text").data[0].embedding or []
    assert first == second and sum(v * v for v in first) == pytest.approx(1.0, abs=1e-5)


# --- streams -----------------------------------------------------------------------------------


def test_stream_bytes_on_the_wire(emu: MistralEmulator) -> None:
    emu.push(MistralReply(text="abcdef", chunks=2, prompt_tokens=9, completion_tokens=2, id="s1"))
    status, headers, raw = raw_post(
        emu, "/v1/chat/completions", {"model": "m", "messages": MSGS, "stream": True}
    )

    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    frames = raw.decode().split("\n\n")
    assert frames[-1] == "" and all(f.startswith("data: ") for f in frames[:-1])
    payloads = [f[len("data: ") :] for f in frames[:-1]]
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert [c["object"] for c in chunks] == ["chat.completion.chunk"] * 3
    assert {c["id"] for c in chunks} == {"s1"} and {c["model"] for c in chunks} == {"m"}
    assert chunks[0]["choices"] == [
        {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
    ]
    assert [c["choices"][0]["delta"]["content"] for c in chunks[1:]] == ["abc", "def"]
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, None, "stop"]
    assert ["usage" in c for c in chunks] == [False, False, True]
    assert chunks[-1]["usage"] == {"prompt_tokens": 9, "total_tokens": 11, "completion_tokens": 2}


def test_sdk_stream_yields_completion_events_and_stops_at_done(emu: MistralEmulator) -> None:
    emu.push(MistralReply(text="one two three four", chunks=4, prompt_tokens=5, completion_tokens=4))
    with client(emu).chat.stream(model="mistral-small-latest", messages=MSGS) as stream:
        events = list(stream)

    assert len(events) == 5
    assert "".join(e.data.choices[0].delta.content or "" for e in events) == "one two three four"  # type: ignore[operator]
    assert events[-1].data.usage is not None and events[-1].data.usage.completion_tokens == 4
    assert events[-1].data.choices[0].finish_reason == "stop"
    assert all(e.data.usage is None for e in events[:-1])


async def test_async_stream_of_fim_and_agents(emu: MistralEmulator) -> None:
    emu.push(
        MistralReply(text="x = 1", chunks=2), MistralReply(text="agent", chunks=1, finish_reason="length")
    )
    async with aclient(emu) as c:
        fim = [e async for e in await c.fim.stream_async(model="codestral-latest", prompt="x =")]
        agent = [e async for e in await c.agents.stream_async(agent_id="ag:1", messages=MSGS)]
    assert fim[-1].data.usage is not None and len(fim) == 3
    assert agent[-1].data.choices[0].finish_reason == "length" and agent[-1].data.model == DEFAULT_AGENT_MODEL


def test_cut_stream_raises_and_counts_no_usage(emu: MistralEmulator) -> None:
    emu.push(MistralReply(chunks=5, cut_after=3))
    seen: list[Any] = []
    with pytest.raises(CUT_ERRORS):
        for event in client(emu).chat.stream(model="m", messages=MSGS):
            seen.append(event)
    assert len(seen) == 3 and all(e.data.usage is None for e in seen)
    assert emu.served.requests == 1 and emu.served.prompt_tokens == 0


def test_cut_after_the_usage_chunk_counts_it(emu: MistralEmulator) -> None:
    emu.push(MistralReply(chunks=2, cut_after=3, prompt_tokens=11, completion_tokens=2))
    seen: list[Any] = []
    with pytest.raises(CUT_ERRORS):
        for event in client(emu).chat.stream(model="m", messages=MSGS):
            seen.append(event)
    assert seen[-1].data.usage is not None
    assert (emu.served.prompt_tokens, emu.served.completion_tokens) == (11, 2)


async def test_gate_holds_the_stream_until_set(emu: MistralEmulator) -> None:
    gate = threading.Event()
    emu.push(MistralReply(chunks=3, gate=gate, gate_after=2))
    async with aclient(emu) as c:
        stream = await c.chat.stream_async(model="m", messages=MSGS)
        first = [await stream.__anext__(), await stream.__anext__()]
        pending = asyncio.ensure_future(stream.__anext__())
        done, _ = await asyncio.wait({pending}, timeout=0.2)
        assert not done  # held by the gate
        gate.set()
        rest = [await pending] + [e async for e in stream]
    assert len(first) + len(rest) == 4


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_cls", "body"),
    [
        (
            400,
            errors.SDKError,
            {"object": "error", "type": "invalid_request_message_error", "param": None, "code": None},
        ),
        (401, errors.SDKError, {"message": "Unauthorized"}),
        (422, errors.HTTPValidationError, {"object": "error", "type": "invalid_request_message_error"}),
        (
            429,
            errors.SDKError,
            {"object": "error", "message": "Rate limit exceeded", "type": "rate_limited", "code": "1300"},
        ),
        (500, errors.SDKError, {"detail": "Internal Server Error"}),
    ],
)
def test_error_statuses_raise_the_sdk_errors(
    emu: MistralEmulator, status: int, error_cls: type[Exception], body: dict[str, Any]
) -> None:
    emu.push(MistralReply(status=status), MistralReply(status=status))
    c = client(emu)
    with pytest.raises(error_cls) as caught:
        c.chat.complete(model="mistral-small-latest", messages=MSGS)
    with pytest.raises(error_cls):
        c.chat.stream(model="mistral-small-latest", messages=MSGS)

    assert type(caught.value) is error_cls
    assert caught.value.status_code == status  # type: ignore[attr-defined]
    sent = json.loads(caught.value.body)  # type: ignore[attr-defined]
    assert body.items() <= sent.items()
    assert emu.served.requests == 2 and emu.served.prompt_tokens == 0


def test_422_carries_the_validation_detail(emu: MistralEmulator) -> None:
    emu.push(MistralReply(status=422))
    with pytest.raises(errors.HTTPValidationError) as caught:
        client(emu).chat.complete(model="m", messages=MSGS)
    detail = json.loads(caught.value.body)["message"]["detail"]
    assert detail[0]["type"] == "extra_forbidden" and detail[0]["loc"] == ["body", "max_completion_tokens"]


def test_error_fields_can_be_scripted(emu: MistralEmulator) -> None:
    emu.push(
        MistralReply(
            status=429, message="Requests rate limit exceeded", error_type="rate_limited", error_code="1301"
        )
    )
    emu.push(MistralReply(status=503, raw_error={"message": "Service unavailable"}))
    c = client(emu)
    with pytest.raises(errors.SDKError) as first:
        c.chat.complete(model="m", messages=MSGS)
    with pytest.raises(errors.SDKError) as second:
        c.chat.complete(model="m", messages=MSGS)
    assert json.loads(first.value.body)["message"] == "Requests rate limit exceeded"
    assert json.loads(first.value.body)["code"] == "1301"
    assert json.loads(second.value.body) == {"message": "Service unavailable"}


def test_missing_bearer_token_and_unknown_path(emu: MistralEmulator) -> None:
    status, _, raw = raw_post(emu, "/v1/chat/completions", {"model": "m", "messages": MSGS}, auth=False)
    assert status == 401 and json.loads(raw)["message"] == "Unauthorized"
    status, _, raw = raw_post(emu, "/v1/nope", {})
    assert status == 404 and json.loads(raw) == {"detail": "Not Found"}
    assert emu.served.requests == 0


# --- scripting and recording -------------------------------------------------------------------


def test_default_reply_and_request_recording(emu: MistralEmulator) -> None:
    response = client(emu).chat.complete(
        model="mistral-small-latest", messages=MSGS, temperature=0.3, max_tokens=64
    )

    assert response.choices[0].message is not None and response.choices[0].message.content == DEFAULT_TEXT
    assert response.usage.prompt_tokens == 8 + len(json.dumps(MSGS)) // 4
    assert response.usage.completion_tokens == len(DEFAULT_TEXT.split())
    (recorded,) = emu.requests
    assert recorded.path == "/v1/chat/completions"
    assert recorded.headers["authorization"] == f"Bearer {API_KEY}"
    assert recorded.json["temperature"] == 0.3 and recorded.json["max_tokens"] == 64


def test_raw_and_omitted_usage(emu: MistralEmulator) -> None:
    raw = {
        "prompt_tokens": 5,
        "completion_tokens": 2,
        "total_tokens": 7,
        "prompt_token_details": {"cached_tokens": 1},
    }
    emu.push(MistralReply(raw_usage=raw), MistralReply(omit_usage=True, chunks=2))
    c = client(emu)
    assert c.chat.complete(model="m", messages=MSGS).usage.model_extra == {
        "prompt_token_details": {"cached_tokens": 1}
    }
    events = list(c.chat.stream(model="m", messages=MSGS))
    assert all(e.data.usage is None for e in events)
    assert (emu.served.prompt_tokens, emu.served.completion_tokens) == (5, 2)


def test_replies_are_consumed_in_order_and_reset_clears(emu: MistralEmulator) -> None:
    emu.push(MistralReply(text="first"), MistralReply(text="second"), MistralReply(text="never"))
    c = client(emu)
    texts = [c.chat.complete(model="m", messages=MSGS).choices[0].message.content for _ in range(2)]  # type: ignore[union-attr]
    emu.reset()
    assert emu.pending == 0 and emu.requests == [] and emu.served.requests == 0
    assert texts == ["first", "second"]
