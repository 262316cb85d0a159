"""Usage from litellm's streams to OpenAI-compatible servers: asked by default, a refusal of
`stream_options` resent once without it and the endpoint remembered (see test_stream_usage.py for the
openai SDK)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

litellm = pytest.importorskip("litellm")

from emulators import OpenAIEmulator, Reply  # noqa: E402
from otel_llm_usage import semconv as sc  # noqa: E402

MSGS = [{"role": "user", "content": "What is the capital of France?"}]
API_KEY = "sk-test-secret-key-0123456789"
REPLY = Reply(prompt_tokens=1000, cached_tokens=200, completion_tokens=500, chunks=4)


@pytest.fixture(params=["reject", "reject_422"])
def refusing(request: pytest.FixtureRequest) -> Iterator[OpenAIEmulator]:
    with OpenAIEmulator(stream_options=request.param) as emu:
        yield emu


def attrs(span: Any) -> dict[str, Any]:
    return dict(span.attributes or {})


def sent_stream_options(emu: OpenAIEmulator) -> list[Any]:
    return [r.json.get("stream_options") for r in emu.requests if r.path.endswith("/chat/completions")]


def _litellm_chunks(emu: OpenAIEmulator, model: str = "openai/gpt-4o", **kw: Any) -> list[Any]:
    got = litellm.completion(
        model=model, messages=MSGS, api_base=emu.base_url, api_key=API_KEY, stream=True, **kw
    )
    return list(got)


async def _litellm_achunks(emu: OpenAIEmulator, model: str = "openai/gpt-4o") -> list[Any]:
    got = await litellm.acompletion(
        model=model, messages=MSGS, api_base=emu.base_url, api_key=API_KEY, stream=True
    )
    return [chunk async for chunk in got]


@pytest.mark.parametrize("model", ["openai/gpt-4o", "hosted_vllm/my-model"])
def test_litellm_default_asks_a_loopback_server_for_usage(
    telemetry: Any, openai_emulator: OpenAIEmulator, model: str
) -> None:
    openai_emulator.push(REPLY)
    chunks = _litellm_chunks(openai_emulator, model)
    assert sent_stream_options(openai_emulator) == [{"include_usage": True}]
    assert all(getattr(chunk, "usage", None) is None for chunk in chunks)
    a = attrs(telemetry.one_llm_span())
    assert (a[sc.USAGE_INPUT_TOKENS], a[sc.USAGE_OUTPUT_TOKENS]) == (1000, 500)
    assert (openai_emulator.served.prompt_tokens, openai_emulator.served.completion_tokens) == (1000, 500)


def test_litellm_refusal_is_resent_once_and_remembered(telemetry: Any, refusing: OpenAIEmulator) -> None:
    refusing.push(REPLY, REPLY, REPLY)
    first = _litellm_chunks(refusing)
    assert "".join(c.choices[0].delta.content or "" for c in first if c.choices)
    assert sent_stream_options(refusing) == [{"include_usage": True}, None]
    a = attrs(telemetry.one_llm_span())
    assert a[sc.STREAM_USAGE_RETRIED] is True and a[sc.USAGE_SOURCE] == "missing"
    assert sc.ERROR_TYPE not in a

    asyncio.run(_litellm_achunks(refusing))
    assert sent_stream_options(refusing) == [{"include_usage": True}, None, None]
    assert len(telemetry.llm_spans()) == 2


def test_litellm_async_refusal_is_resent_once(telemetry: Any, refusing: OpenAIEmulator) -> None:
    chunks = asyncio.run(_litellm_achunks(refusing))
    assert chunks
    assert sent_stream_options(refusing) == [{"include_usage": True}, None]
    assert attrs(telemetry.one_llm_span())[sc.STREAM_USAGE_RETRIED] is True


def test_litellm_caller_who_set_stream_options_gets_the_refusal(
    telemetry: Any, refusing: OpenAIEmulator
) -> None:
    with pytest.raises((litellm.BadRequestError, litellm.UnprocessableEntityError)) as raised:
        _litellm_chunks(refusing, stream_options={"include_usage": True})
    assert getattr(raised.value, "status_code", None) in (400, 422)
    assert sent_stream_options(refusing) == [{"include_usage": True}]
    assert sc.STREAM_USAGE_RETRIED not in attrs(telemetry.one_llm_span())
