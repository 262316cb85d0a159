"""The soak (benchmarks/soak.py) at a small size, and the emulators' in-process transport it relies on."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import anthropic
import httpx2
import openai
import pytest

from benchmarks import soak
from emulators import AnthropicEmulator, AnthropicReply, OpenAIEmulator, Reply

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]


def _failed(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in result["checks"] if not c["ok"]]


@pytest.mark.parametrize(
    ("transport", "calls", "max_sessions"), [("inprocess", 2000, 40), ("loopback", 200, 8)]
)
def test_soak_totals_equal_what_the_emulators_served(transport: str, calls: int, max_sessions: int) -> None:
    result = soak.run_soak(calls, calls // 4, max_sessions=max_sessions, transport=transport, seed=7)
    assert _failed(result) == [] and result["ok"]
    tokens = result["totals"]["tokens"]
    assert {t: v["ours"] for t, v in tokens.items()} == {t: v["served"] for t, v in tokens.items()}
    assert all(v["served"] > 0 for v in tokens.values())
    assert result["totals"]["requests"] == calls
    # Every scripted kind of call ran, errors and cut streams included.
    assert set(result["calls_by_kind"]) == {k.name for k in soak.KINDS}
    assert 0 < result["totals"]["errors"] < calls
    assert result["samples"][-1]["calls"] == calls
    assert result["samples"][-1]["open_spans"] == 0
    assert all(s["open_spans"] == 0 for s in result["samples"])
    # More sessions than the ledger holds, so it evicted; never more than max_sessions held.
    assert result["totals"]["sessions_started"] > max_sessions
    assert max(s["held_sessions"] for s in result["samples"]) == max_sessions
    assert all(s["tokens_match"] for s in result["samples"])
    assert "| input |" in soak.markdown(result)


def test_soak_refuses_to_run_inside_someone_elses_instrumentation(telemetry: Any) -> None:
    with pytest.raises(RuntimeError, match="already instrumented"):
        soak.run_soak(10, 5)


# --- the in-process transport ------------------------------------------------------------------


def _normalised(raw: bytes) -> bytes:
    return re.sub(rb'"created":\d+', b'"created":0', raw)


def test_inprocess_transport_hands_over_the_bytes_loopback_http_sends() -> None:
    body = {
        "model": "gpt-4o-mini",
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with OpenAIEmulator() as emu:
        emu.push(Reply(id="chatcmpl-fixed", chunks=4), Reply(id="chatcmpl-fixed", chunks=4))
        with httpx2.Client() as http:
            wire = http.post(
                f"{emu.base_url}/chat/completions", json=body, headers={"authorization": "Bearer k"}
            )
        with (
            httpx2.Client(transport=emu.transport(httpx2)) as http,
            http.stream(
                "POST", f"{emu.base_url}/chat/completions", json=body, headers={"authorization": "Bearer k"}
            ) as response,
        ):
            pieces = list(response.iter_raw())
        assert [r.path for r in emu.requests] == ["/v1/chat/completions"] * 2
        assert emu.requests[1].json == body and emu.requests[1].headers["authorization"] == "Bearer k"
    assert response.status_code == wire.status_code == 200
    assert response.headers["content-type"] == wire.headers["content-type"]
    assert _normalised(b"".join(pieces)) == _normalised(wire.content)
    # One piece per event, as the emulator wrote them: 4 content chunks, the usage chunk, [DONE].
    assert len(pieces) == 6 and pieces[-1] == b"data: [DONE]\n\n"
    assert all(p.startswith(b"data: ") and p.endswith(b"\n\n") for p in pieces)


def test_inprocess_transport_counts_and_parses_like_the_sdk_expects() -> None:
    emu = AnthropicEmulator()  # never started: no socket at all
    emu.push(
        AnthropicReply(input_tokens=12, output_tokens=5, cache_read_input_tokens=3),
        AnthropicReply(input_tokens=7, output_tokens=2, chunks=2),
    )
    http = httpx2.Client(transport=emu.transport(httpx2))
    with anthropic.Anthropic(
        base_url="http://emulator.invalid", api_key="k", max_retries=0, http_client=http
    ) as c:
        message = c.messages.create(model="claude-haiku-4-5", max_tokens=8, messages=MESSAGES)
        assert (message.usage.input_tokens, message.usage.cache_read_input_tokens) == (12, 3)
        events = list(
            c.messages.create(model="claude-haiku-4-5", max_tokens=8, messages=MESSAGES, stream=True)
        )
    assert events[0].type == "message_start" and events[-1].type == "message_stop"
    served = emu.served
    assert (served.requests, served.input_tokens, served.output_tokens) == (2, 19, 7)


def test_inprocess_transport_breaks_a_cut_stream_like_a_dropped_connection() -> None:
    emu = OpenAIEmulator()
    emu.push(Reply(chunks=3, cut_after=2), Reply(status=429))
    http = httpx2.Client(transport=emu.transport(httpx2))
    with openai.OpenAI(
        base_url="http://emulator.invalid/v1", api_key="k", max_retries=0, http_client=http
    ) as c:
        got = []
        # The SDK turns the broken body into its connection error, as it does over a socket.
        with pytest.raises(openai.APIConnectionError) as caught:
            for chunk in c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True):
                got.append(chunk)
        assert isinstance(caught.value.__cause__, httpx2.RemoteProtocolError)
        assert "incomplete chunked read" in str(caught.value.__cause__)
        assert len(got) == 2
        with pytest.raises(openai.RateLimitError):
            c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert emu.served.requests == 2


def test_inprocess_transport_serves_async_clients() -> None:
    emu = AnthropicEmulator()
    emu.push(AnthropicReply(input_tokens=4, output_tokens=3, chunks=3))

    async def main() -> list[str]:
        http = httpx2.AsyncClient(transport=emu.transport(httpx2))
        async with anthropic.AsyncAnthropic(
            base_url="http://emulator.invalid", api_key="k", max_retries=0, http_client=http
        ) as c:
            stream = await c.messages.create(
                model="claude-haiku-4-5", max_tokens=8, messages=MESSAGES, stream=True
            )
            return [event.type async for event in stream]

    types = asyncio.run(main())
    assert types[0] == "message_start" and types[-1] == "message_stop"
    assert types.count("content_block_delta") == 3
    assert emu.served.output_tokens == 3


def test_request_log_can_be_bounded() -> None:
    emu = OpenAIEmulator()
    emu.keep_requests = 2
    http = httpx2.Client(transport=emu.transport(httpx2))
    with openai.OpenAI(
        base_url="http://emulator.invalid/v1", api_key="k", max_retries=0, http_client=http
    ) as c:
        for n in range(5):
            c.chat.completions.create(model=f"m-{n}", messages=MESSAGES)
    assert [r.json["model"] for r in emu.requests] == ["m-3", "m-4"]
    assert emu.served.requests == 5
