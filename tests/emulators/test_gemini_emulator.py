"""The Gemini emulator, driven by the real google-genai SDK (sync and async) with no instrumentation."""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
from collections.abc import Iterator
from typing import Any, Literal

import google.auth.credentials
import pytest
from google import genai
from google.genai import errors, types

from emulators import GeminiEmulator, GeminiReply
from emulators.gemini import DEFAULT_TEXT

Mode = Literal["sync", "async"]
Platform = Literal["gemini", "vertex", "express"]
API_KEY = "AIza-test-key"


def _cut_errors() -> tuple[type[BaseException], ...]:
    """What a dropped stream raises, from whichever HTTP client the SDK sends through."""
    import importlib

    found: list[type[BaseException]] = []
    for module, name in (
        ("httpx2", "TransportError"),
        ("httpx", "TransportError"),
        ("aiohttp", "ClientError"),
    ):
        try:
            found.append(getattr(importlib.import_module(module), name))
        except ImportError:
            continue
    return tuple(found)


CUT_ERRORS = _cut_errors()


class StaticToken(google.auth.credentials.Credentials):
    """Vertex AI credentials that never leave the process."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.token = "ya29.test-token"

    def refresh(self, request: Any) -> None:
        self.token = "ya29.test-token"


_clients: dict[tuple[int, Platform], genai.Client] = {}
# One event loop for every async call of the module: releases before 3.x bind their async client to
# the first loop that uses it.
_runner: list[asyncio.Runner] = []


def make_client(emu: GeminiEmulator, platform: Platform = "gemini") -> genai.Client:
    """One client per emulator and platform: building one loads TLS trust stores (~0.3 s)."""
    key = (emu.port, platform)
    if key not in _clients:
        _clients[key] = _new_client(emu, platform)
    return _clients[key]


def _new_client(emu: GeminiEmulator, platform: Platform) -> genai.Client:
    options = types.HttpOptions(base_url=emu.base_url, retry_options=types.HttpRetryOptions(attempts=1))
    if platform == "vertex":
        return genai.Client(
            vertexai=True,
            project="proj",
            location="us-central1",
            credentials=StaticToken(),
            http_options=options,
        )
    if platform == "express":
        return genai.Client(vertexai=True, api_key=API_KEY, http_options=options)
    return genai.Client(api_key=API_KEY, http_options=options)


@pytest.fixture(scope="module")
def _server() -> Iterator[GeminiEmulator]:
    with GeminiEmulator() as server, asyncio.Runner() as runner:
        _runner.append(runner)
        yield server
    _runner.clear()
    _clients.clear()


@pytest.fixture
def emu(_server: GeminiEmulator) -> GeminiEmulator:
    _server.reset()
    return _server


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> Mode:
    value: Mode = request.param
    return value


class Api:
    """Runs one SDK call through a fresh sync or async client and drains streams inside it."""

    def __init__(self, emu: GeminiEmulator, mode: Mode, platform: Platform = "gemini") -> None:
        self.emu = emu
        self.mode = mode
        self.platform = platform

    def call(self, method: str, **kwargs: Any) -> Any:
        client = make_client(self.emu, self.platform)
        if self.mode == "sync":
            return getattr(client.models, method)(**kwargs)

        async def main() -> Any:
            return await getattr(client.aio.models, method)(**kwargs)

        return _runner[0].run(main())

    def drain(self, **kwargs: Any) -> tuple[list[Any], BaseException | None]:
        client = make_client(self.emu, self.platform)
        items: list[Any] = []
        if self.mode == "sync":
            try:
                for item in client.models.generate_content_stream(**kwargs):
                    items.append(item)
            except Exception as exc:
                return items, exc
            return items, None

        async def main() -> tuple[list[Any], BaseException | None]:
            try:
                async for item in await client.aio.models.generate_content_stream(**kwargs):
                    items.append(item)
            except Exception as exc:
                return items, exc
            return items, None

        return _runner[0].run(main())

    def stream(self, **kwargs: Any) -> list[Any]:
        items, error = self.drain(**kwargs)
        if error is not None:
            raise error
        return items


@pytest.fixture
def api(emu: GeminiEmulator, mode: Mode) -> Api:
    return Api(emu, mode)


def raw_post(
    emu: GeminiEmulator, path: str, body: object, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """POST with the standard library, to see the exact bytes the SDK would parse."""
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=10)
    try:
        sent = {"Content-Type": "application/json", "x-goog-api-key": API_KEY, **(headers or {})}
        conn.request("POST", path, body=json.dumps(body), headers=sent)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


CONTENTS = {"contents": [{"role": "user", "parts": [{"text": "Say something short."}]}]}


# --- generateContent ---------------------------------------------------------------------------


def test_generate_every_usage_detail(emu: GeminiEmulator, api: Api) -> None:
    emu.push(
        GeminiReply(
            text="Hello there.",
            model_version="gemini-2.5-pro-preview",
            response_id="resp-fixed",
            prompt_tokens=1200,
            candidates_tokens=40,
            cached_tokens=600,
            thoughts_tokens=300,
            tool_use_prompt_tokens=25,
            audio_prompt_tokens=100,
            audio_candidates_tokens=10,
        )
    )
    response = api.call("generate_content", model="gemini-2.5-pro", contents="Hi")

    assert isinstance(response, types.GenerateContentResponse)
    assert response.text == "Hello there."
    assert response.model_version == "gemini-2.5-pro-preview"
    assert response.response_id == "resp-fixed"
    assert response.candidates is not None
    assert response.candidates[0].finish_reason == types.FinishReason.STOP
    usage = response.usage_metadata
    assert usage is not None
    assert (usage.prompt_token_count, usage.candidates_token_count) == (1200, 40)
    assert (usage.cached_content_token_count, usage.thoughts_token_count) == (600, 300)
    assert usage.tool_use_prompt_token_count == 25
    assert usage.total_token_count == 1200 + 40 + 300 + 25
    details = {d.modality: d.token_count for d in usage.prompt_tokens_details or []}
    assert details == {types.MediaModality.TEXT: 1100, types.MediaModality.AUDIO: 100}
    out = {d.modality: d.token_count for d in usage.candidates_tokens_details or []}
    assert out == {types.MediaModality.TEXT: 30, types.MediaModality.AUDIO: 10}
    assert [(d.modality, d.token_count) for d in usage.cache_tokens_details or []] == [
        (types.MediaModality.TEXT, 600)
    ]
    served = emu.served
    assert (served.requests, served.prompt_tokens, served.candidates_tokens) == (1, 1200, 40)
    assert (served.cached_tokens, served.thoughts_tokens, served.tool_use_prompt_tokens) == (600, 300, 25)


def test_generate_wire_shape_and_zero_counts_left_out(emu: GeminiEmulator) -> None:
    status, headers, raw = raw_post(emu, "/v1beta/models/gemini-2.5-flash:generateContent", CONTENTS)

    assert status == 200
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(raw)
    body = json.loads(raw)
    assert list(body) == ["candidates", "usageMetadata", "modelVersion", "responseId"]
    assert body["candidates"] == [
        {"content": {"parts": [{"text": DEFAULT_TEXT}], "role": "model"}, "finishReason": "STOP", "index": 0}
    ]
    usage = body["usageMetadata"]
    assert list(usage) == [
        "promptTokenCount",
        "candidatesTokenCount",
        "totalTokenCount",
        "promptTokensDetails",
    ]
    assert usage["totalTokenCount"] == usage["promptTokenCount"] + usage["candidatesTokenCount"]
    assert body["modelVersion"] == "gemini-2.5-flash"
    assert raw.startswith(b'{\n  "candidates"')


def test_raw_and_omitted_usage(emu: GeminiEmulator, api: Api) -> None:
    raw = {"promptTokenCount": 7, "candidatesTokenCount": "lots", "totalTokenCount": None}
    emu.push(GeminiReply(omit_usage=True), GeminiReply(raw_usage=raw))
    bare = api.call("generate_content", model="gemini-2.5-flash", contents="Hi")
    assert bare.usage_metadata is None
    assert emu.served.prompt_tokens == 0

    status, _, body = raw_post(emu, "/v1beta/models/m:generateContent", CONTENTS)
    assert status == 200
    assert json.loads(body)["usageMetadata"] == raw
    assert emu.served.prompt_tokens == 7


def test_function_call_parts_drive_automatic_function_calling(emu: GeminiEmulator, api: Api) -> None:
    calls: list[str] = []

    def get_weather(city: str) -> str:
        """Weather in a city."""
        calls.append(city)
        return "sunny"

    emu.push(
        GeminiReply(parts=[{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]),
        GeminiReply(text="It is sunny in Paris."),
    )
    response = api.call(
        "generate_content",
        model="gemini-2.5-flash",
        contents="Weather in Paris?",
        config=types.GenerateContentConfig(tools=[get_weather]),
    )

    assert response.text == "It is sunny in Paris."
    assert calls == ["Paris"]
    second = emu.requests[1].json["contents"]
    assert second[-1]["parts"][0]["functionResponse"]["name"] == "get_weather"
    assert emu.served.requests == 2


# --- streamGenerateContent ---------------------------------------------------------------------


def test_stream_running_usage_on_every_chunk(emu: GeminiEmulator, api: Api) -> None:
    emu.push(
        GeminiReply(text="one two three four five six seven eight", chunks=4, prompt_tokens=50,
                    candidates_tokens=8, thoughts_tokens=20, response_id="r-1")
    )  # fmt: skip
    chunks = api.stream(model="gemini-2.5-flash", contents="Hi")

    assert len(chunks) == 4
    assert "".join(c.text for c in chunks) == "one two three four five six seven eight"
    assert {c.response_id for c in chunks} == {"r-1"}
    assert [c.candidates[0].finish_reason for c in chunks] == [None, None, None, types.FinishReason.STOP]
    counts = [c.usage_metadata.candidates_token_count for c in chunks]
    assert counts == [2, 4, 6, 8]
    assert all(c.usage_metadata.prompt_token_count == 50 for c in chunks)
    assert all(c.usage_metadata.thoughts_token_count == 20 for c in chunks)
    served = emu.served
    assert (served.prompt_tokens, served.candidates_tokens, served.thoughts_tokens) == (50, 8, 20)
    assert emu.requests[0].query == {"alt": "sse"}


def test_stream_sse_framing(emu: GeminiEmulator) -> None:
    emu.push(GeminiReply(chunks=2))
    status, headers, raw = raw_post(
        emu, "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", CONTENTS
    )

    assert status == 200
    assert headers["content-type"] == "text/event-stream"
    assert headers["transfer-encoding"] == "chunked"
    events = raw.split(b"\r\n\r\n")
    assert events[-1] == b""
    assert all(e.startswith(b"data: {") for e in events[:-1])
    first = events[0][len(b"data: ") :]
    assert first.startswith(b'{"candidates": [{"content": {"parts": [{"text": ')
    assert b'"role": "model"},"index": 0}],"usageMetadata": {' in first


def test_stream_as_json_array_without_alt_sse(emu: GeminiEmulator) -> None:
    emu.push(GeminiReply(chunks=3, text="a b c"))
    status, headers, raw = raw_post(emu, "/v1beta/models/gemini-2.5-flash:streamGenerateContent", CONTENTS)

    assert status == 200
    assert headers["content-type"].startswith("application/json")
    chunks = json.loads(raw)
    assert [c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks] == ["a", " b", " c"]
    assert b"\n,\r\n" in raw


def test_vertex_stream_usage_only_on_the_last_chunk(emu: GeminiEmulator, mode: Mode) -> None:
    emu.push(GeminiReply(chunks=3, prompt_tokens=30, candidates_tokens=9))
    chunks = Api(emu, mode, "vertex").stream(model="gemini-2.5-flash", contents="Hi")

    assert [c.usage_metadata is None for c in chunks] == [True, True, False]
    final = chunks[-1].usage_metadata
    assert (final.prompt_token_count, final.candidates_token_count) == (30, 9)
    assert final.traffic_type == types.TrafficType.ON_DEMAND
    assert all(c.create_time is not None for c in chunks)


def test_usage_on_every_chunk_overrides_the_platform(emu: GeminiEmulator, api: Api) -> None:
    emu.push(GeminiReply(chunks=3, usage_on_every_chunk=False))
    chunks = api.stream(model="gemini-2.5-flash", contents="Hi")
    assert [c.usage_metadata is None for c in chunks] == [True, True, False]


def test_stream_cut_midway(emu: GeminiEmulator, api: Api) -> None:
    emu.push(GeminiReply(chunks=6, cut_after=2, prompt_tokens=40, candidates_tokens=12))
    chunks, error = api.drain(model="gemini-2.5-flash", contents="Hi")

    assert len(chunks) == 2
    assert isinstance(error, CUT_ERRORS)
    served = emu.served
    assert (served.prompt_tokens, served.candidates_tokens) == (40, 4)


def test_stream_error_event(emu: GeminiEmulator, api: Api) -> None:
    emu.push(GeminiReply(chunks=4, error_after=1, stream_error_code=503, message="Overloaded."))
    path = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    status, _, raw = raw_post(emu, path, CONTENTS)
    assert status == 200
    events = raw.split(b"\r\n\r\n")[:-1]
    assert len(events) == 2
    assert json.loads(events[-1][len(b"data: ") :]) == {
        "error": {"code": 503, "message": "Overloaded.", "status": "UNAVAILABLE"}
    }

    emu.push(GeminiReply(chunks=4, error_after=1, stream_error_code=503))
    chunks, error = api.drain(model="gemini-2.5-flash", contents="Hi")
    assert len(chunks) == 1
    assert isinstance(error, errors.ServerError)  # google-genai 3.x raises on an error event
    assert (error.code, error.status) == (503, "UNAVAILABLE")


def test_gate_holds_the_stream_until_set(emu: GeminiEmulator) -> None:
    gate = threading.Event()
    emu.push(GeminiReply(chunks=3, gate=gate, gate_after=1))
    client = make_client(emu)
    stream = client.models.generate_content_stream(model="gemini-2.5-flash", contents="Hi")
    first = next(stream)
    assert first.text
    assert emu.served.candidates_tokens > 0
    gate.set()
    assert len(list(stream)) == 2


# --- errors and routing ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "rpc", "exc_type"),
    [(400, "INVALID_ARGUMENT", errors.ClientError), (404, "NOT_FOUND", errors.ClientError),
     (429, "RESOURCE_EXHAUSTED", errors.ClientError), (500, "INTERNAL", errors.ServerError),
     (503, "UNAVAILABLE", errors.ServerError)],
)  # fmt: skip
def test_errors_in_google_format(
    emu: GeminiEmulator, api: Api, status: int, rpc: str, exc_type: type[errors.APIError]
) -> None:
    emu.push(GeminiReply(status=status))
    with pytest.raises(exc_type) as caught:
        api.call("generate_content", model="gemini-2.5-flash", contents="Hi")
    assert (caught.value.code, caught.value.status) == (status, rpc)
    assert caught.value.message
    assert emu.served.requests == 1


def test_error_body_shape(emu: GeminiEmulator) -> None:
    emu.push(GeminiReply(status=429))
    status, headers, raw = raw_post(emu, "/v1beta/models/gemini-2.5-pro:generateContent", CONTENTS)

    assert status == 429
    assert headers["content-type"] == "application/json"
    error = json.loads(raw)["error"]
    assert list(error) == ["code", "message", "status", "details"]
    assert (error["code"], error["status"]) == (429, "RESOURCE_EXHAUSTED")
    assert error["details"][-1] == {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}


def test_error_on_stream_request(emu: GeminiEmulator, api: Api) -> None:
    emu.push(GeminiReply(status=429, message="slow down", error_status="RESOURCE_EXHAUSTED"))
    chunks, error = api.drain(model="gemini-2.5-flash", contents="Hi")
    assert chunks == []
    assert isinstance(error, errors.ClientError)
    assert (error.code, error.message) == (429, "slow down")


def test_authentication_is_required(emu: GeminiEmulator) -> None:
    path = "/v1beta/models/gemini-2.5-flash:generateContent"
    assert raw_post(emu, path, CONTENTS, {"x-goog-api-key": ""})[0] == 403
    assert raw_post(emu, path + "?key=abc", CONTENTS, {"x-goog-api-key": ""})[0] == 200
    vertex = "/v1beta1/projects/p/locations/l/publishers/google/models/gemini-2.5-flash:generateContent"
    status, _, raw = raw_post(emu, vertex, CONTENTS, {"x-goog-api-key": ""})
    assert status == 401 and json.loads(raw)["error"]["status"] == "UNAUTHENTICATED"
    assert raw_post(emu, vertex, CONTENTS, {"x-goog-api-key": "", "Authorization": "Bearer t"})[0] == 200
    express = "/v1beta1/publishers/google/models/gemini-2.5-flash:generateContent"
    assert raw_post(emu, express, CONTENTS)[0] == 200
    assert emu.served.requests == 3


def test_unknown_routes_and_bad_bodies_consume_no_reply(emu: GeminiEmulator) -> None:
    emu.push(GeminiReply())
    assert raw_post(emu, "/v1beta/models/m:summon", CONTENTS)[0] == 404
    assert raw_post(emu, "/v2/models/m:generateContent", CONTENTS)[0] == 404
    assert raw_post(emu, "/v1beta/models/m:generateContent", {"contents": []})[0] == 400
    assert raw_post(emu, "/v1beta/models/m:predict", {"instances": []})[0] == 404
    assert (emu.pending, emu.served.requests) == (1, 0)


def test_zero_counts_are_left_out(emu: GeminiEmulator) -> None:
    emu.push(GeminiReply(text="", candidates_tokens=0, prompt_tokens=9, finish_reason="SAFETY"))
    status, _, raw = raw_post(emu, "/v1beta/models/m:generateContent", CONTENTS)
    assert status == 200
    body = json.loads(raw)
    assert body["usageMetadata"] == {
        "promptTokenCount": 9,
        "totalTokenCount": 9,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 9}],
    }
    assert body["candidates"][0]["finishReason"] == "SAFETY"


@pytest.mark.parametrize("platform", ["vertex", "express"])
def test_vertex_paths(emu: GeminiEmulator, mode: Mode, platform: Platform) -> None:
    emu.push(GeminiReply(prompt_tokens=11, candidates_tokens=3))
    response = Api(emu, mode, platform).call("generate_content", model="gemini-2.5-pro", contents="Hi")

    request = emu.requests[-1]
    if platform == "vertex":
        assert request.path == (
            "/v1beta1/projects/proj/locations/us-central1/publishers/google/models/gemini-2.5-pro:generateContent"
        )
        assert request.headers["authorization"] == "Bearer ya29.test-token"
    else:
        assert request.path == "/v1beta1/publishers/google/models/gemini-2.5-pro:generateContent"
        assert request.headers["x-goog-api-key"] == API_KEY
    assert response.usage_metadata.traffic_type == types.TrafficType.ON_DEMAND
    assert response.usage_metadata.candidates_tokens_details is not None
    assert response.create_time is not None


# --- embeddings and token counting -------------------------------------------------------------


def test_gemini_batch_embeddings(emu: GeminiEmulator, api: Api) -> None:
    emu.push(GeminiReply(prompt_tokens=9))
    response = api.call(
        "embed_content",
        model="gemini-embedding-001",
        contents=["first", "second"],
        config=types.EmbedContentConfig(output_dimensionality=4),
    )

    assert emu.requests[-1].path.endswith("/models/gemini-embedding-001:batchEmbedContents")
    assert response.embeddings is not None and len(response.embeddings) == 2
    assert all(len(e.values or []) == 4 for e in response.embeddings)
    assert response.embeddings[0].values != response.embeddings[1].values
    assert response.usage_metadata is not None and response.usage_metadata.prompt_token_count == 9
    assert emu.served.prompt_tokens == 9

    again = api.call("embed_content", model="gemini-embedding-001", contents=["first"])
    assert again.embeddings is not None
    assert len(again.embeddings[0].values or []) == 8


def test_vertex_predict_and_embed_content(emu: GeminiEmulator, mode: Mode) -> None:
    vertex = Api(emu, mode, "vertex")
    emu.push(GeminiReply(prompt_tokens=7), GeminiReply(prompt_tokens=5))
    predicted = vertex.call("embed_content", model="text-embedding-005", contents=["a", "b"])
    gemini = vertex.call("embed_content", model="gemini-embedding-001", contents="a")

    assert emu.requests[0].path.endswith("/models/text-embedding-005:predict")
    assert [e.statistics.token_count for e in predicted.embeddings] == [4, 3]
    assert predicted.metadata is not None and predicted.metadata.billable_character_count
    assert emu.requests[1].path.endswith("/models/gemini-embedding-001:embedContent")
    assert gemini.usage_metadata.prompt_token_count == 5
    assert gemini.embeddings[0].statistics.token_count == 5
    assert emu.served.prompt_tokens == 12


def test_count_tokens_consumes_no_reply(emu: GeminiEmulator, api: Api) -> None:
    emu.push(GeminiReply(text="kept"))
    counted = api.call("count_tokens", model="gemini-2.5-flash", contents="How many tokens?")
    assert counted.total_tokens and counted.total_tokens > 0
    assert emu.pending == 1
    assert (emu.served.requests, emu.served.count_tokens_requests) == (0, 1)


def test_reset_clears_queue_requests_and_totals(emu: GeminiEmulator, api: Api) -> None:
    api.call("generate_content", model="gemini-2.5-flash", contents="Hi")
    emu.push(GeminiReply())
    emu.reset()
    assert (emu.pending, emu.requests, emu.served.requests, emu.served.prompt_tokens) == (0, [], 0, 0)
