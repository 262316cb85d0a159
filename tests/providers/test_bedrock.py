"""boto3's `bedrock-runtime` client, driven over loopback HTTP against the Bedrock Runtime emulator."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.client import BaseClient
from botocore.config import Config
from botocore.eventstream import EventStream
from botocore.exceptions import ClientError, EventStreamError
from botocore.response import StreamingBody
from genai_prices import Usage as GenaiUsage
from genai_prices import calc_price
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.trace import SpanKind, StatusCode

import otel_llm_usage
from emulators import BedrockEmulator, BedrockReply
from otel_llm_usage import semconv as sc
from otel_llm_usage._guard import reported_sites
from otel_llm_usage.context import in_llm_call
from otel_llm_usage.providers import _bedrock_read as read
from otel_llm_usage.providers import bedrock as provider
from tests.conftest import semconv_text

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

CLAUDE = "anthropic.claude-sonnet-4-5-20250929-v1:0"
US_CLAUDE = f"us.{CLAUDE}"
GLOBAL_CLAUDE = f"global.{CLAUDE}"
NOVA = "amazon.nova-pro-v1:0"
LLAMA = "us.meta.llama3-1-70b-instruct-v1:0"
ACCESS_KEY = "AKIDBEDROCKTESTKEY01"
SECRET_KEY = "bedrock/secret/key/never-in-telemetry"
MESSAGES: list[Any] = [{"role": "user", "content": [{"text": "What is the capital of France?"}]}]
SYSTEM: list[Any] = [{"text": "You are terse."}]
CLAUDE_BODY = {
    "anthropic_version": "bedrock-2023-05-31",
    "max_tokens": 50,
    "temperature": 0.5,
    "system": "You are terse.",
    "messages": [{"role": "user", "content": "What is the capital of France?"}],
}
BODIES: dict[str, dict[str, Any]] = {
    "anthropic": CLAUDE_BODY,
    "nova": {"schemaVersion": "messages-v1", "messages": MESSAGES, "inferenceConfig": {"maxTokens": 64}},
    "llama": {"prompt": "What is the capital of France?", "max_gen_len": 64},
}
# Cache read 5000 and write 1000 on top of 300 uncached input tokens, 400 out.
GOLDEN = {
    "input_tokens": 300,
    "output_tokens": 400,
    "cache_read_input_tokens": 5000,
    "cache_write_input_tokens": 1000,
}


@pytest.fixture(scope="module")
def _server() -> Iterator[BedrockEmulator]:
    with BedrockEmulator() as server:
        yield server


@pytest.fixture
def emu(_server: BedrockEmulator) -> BedrockEmulator:
    _server.reset()
    return _server


def client(emu: BedrockEmulator, service: str = "bedrock-runtime", attempts: int = 1) -> Any:
    return boto3.client(
        service,
        endpoint_url=emu.base_url,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(retries={"total_max_attempts": attempts, "mode": "standard"}),
    )


def attrs(span: Any) -> dict[str, Any]:
    return dict(span.attributes or {})


def by_start(t: Any) -> list[Any]:
    return sorted(t.llm_spans(), key=lambda s: s.start_time)


def converse(c: Any, model: str = US_CLAUDE, **kw: Any) -> Any:
    return c.converse(modelId=model, messages=MESSAGES, **kw)


def converse_stream(c: Any, model: str = US_CLAUDE, **kw: Any) -> Any:
    return c.converse_stream(modelId=model, messages=MESSAGES, **kw)


def invoke(c: Any, model: str, family: str, stream: bool = False) -> Any:
    method = c.invoke_model_with_response_stream if stream else c.invoke_model
    return method(modelId=model, body=json.dumps(BODIES[family]))


def aws_price(model: str, **usage: int) -> float:
    return float(calc_price(GenaiUsage(**usage), model, provider_id="aws").total_price)


def test_provider_is_registered() -> None:
    from otel_llm_usage.registry import PROVIDERS

    assert PROVIDERS.get("bedrock") == "otel_llm_usage.providers.bedrock"
    assert provider.LIBRARY == "botocore"


# --- exact tokens and cost -----------------------------------------------------------------------


def test_converse_golden_cost_regional_profile(telemetry: Any, emu: BedrockEmulator) -> None:
    emu.push(BedrockReply(**GOLDEN, stop_reason="end_turn"))
    response = converse(client(emu), inferenceConfig={"maxTokens": 50, "temperature": 0.25})
    assert response["usage"]["inputTokens"] == 300  # Bedrock's input excludes the cache

    span = telemetry.one_llm_span()
    a = attrs(span)
    assert span.name == f"chat {US_CLAUDE}"
    assert span.kind is SpanKind.CLIENT
    assert a[sc.OPERATION_NAME] == "chat"
    assert a[sc.PROVIDER_NAME] == "aws.bedrock"
    assert a[sc.REQUEST_MODEL] == US_CLAUDE
    assert sc.RESPONSE_MODEL not in a  # Converse does not name the model; the id sent is priced
    assert a[sc.REQUEST_STREAM] is False
    assert a[sc.REQUEST_MAX_TOKENS] == 50 and a[sc.REQUEST_TEMPERATURE] == 0.25
    assert a[sc.RESPONSE_FINISH_REASONS] == ("end_turn",)
    assert a[sc.SERVER_ADDRESS] == "127.0.0.1" and a[sc.SERVER_PORT] == emu.port
    assert a[sc.USAGE_INPUT_TOKENS] == 6300
    assert a[sc.USAGE_CACHE_READ_INPUT_TOKENS] == 5000
    assert a[sc.USAGE_CACHE_CREATION_INPUT_TOKENS] == 1000
    assert sc.USAGE_CACHE_CREATION_1H_INPUT_TOKENS not in a
    assert a[sc.USAGE_OUTPUT_TOKENS] == 400
    assert a[sc.USAGE_SOURCE] == "provider"
    # AWS's regional (in-region and geographic profile) prices for Claude Sonnet 4.5, per million
    # tokens: $3.30 input, $0.33 cache read, $4.125 5-minute cache write, $16.50 output.
    golden = (300 * 3.30 + 5000 * 0.33 + 1000 * 4.125 + 400 * 16.50) / 1e6
    assert golden == pytest.approx(0.013365, abs=1e-15)
    assert a[sc.USAGE_COST] == pytest.approx(golden, abs=1e-12)
    assert a[sc.USAGE_COST] == pytest.approx(
        aws_price(
            US_CLAUDE, input_tokens=6300, cache_read_tokens=5000, cache_write_tokens=1000, output_tokens=400
        ),
        abs=1e-12,
    )
    assert a[sc.COST_INPUT_USD] == pytest.approx(300 * 3.30e-6, abs=1e-12)
    assert a[sc.COST_CACHE_READ_USD] == pytest.approx(5000 * 0.33e-6, abs=1e-12)
    assert a[sc.COST_CACHE_WRITE_USD] == pytest.approx(1000 * 4.125e-6, abs=1e-12)
    assert a[sc.COST_OUTPUT_USD] == pytest.approx(400 * 16.50e-6, abs=1e-12)
    assert a[sc.COST_SOURCE] == "price_table"
    assert span.status.status_code is not StatusCode.ERROR
    tokens = {p.attributes[sc.LLM_TOKEN_TYPE]: p.value for p in telemetry.points(sc.METRIC_TOKENS)}
    assert tokens == {"input": 6300, "output": 400, "cache_read": 5000, "cache_write": 1000}
    assert telemetry.total(sc.METRIC_COST, gen_ai__provider__name="aws.bedrock") == pytest.approx(golden)


def test_converse_golden_cost_global_profile_with_1_hour_writes(telemetry: Any, emu: BedrockEmulator) -> None:
    emu.push(
        BedrockReply(
            input_tokens=300,
            output_tokens=400,
            cache_read_input_tokens=5000,
            cache_write_1h_input_tokens=1000,
        )
    )
    response = converse(client(emu), model=GLOBAL_CLAUDE)
    assert response["usage"]["cacheDetails"] == [{"ttl": "1h", "inputTokens": 1000}]
    a = attrs(telemetry.one_llm_span())
    assert a[sc.USAGE_INPUT_TOKENS] == 6300
    assert a[sc.USAGE_CACHE_CREATION_INPUT_TOKENS] == 1000
    assert a[sc.USAGE_CACHE_CREATION_1H_INPUT_TOKENS] == 1000
    # AWS's global cross-region prices: $3 input, $0.30 cache read, $6 1-hour cache write, $15 output.
    golden = (300 * 3 + 5000 * 0.30 + 1000 * 6 + 400 * 15) / 1e6
    assert a[sc.USAGE_COST] == pytest.approx(golden, abs=1e-12) == 0.0144
    expected = aws_price(
        GLOBAL_CLAUDE,
        input_tokens=6300,
        cache_read_tokens=5000,
        cache_write_tokens=1000,
        cache_write_1h_tokens=1000,
        output_tokens=400,
    )
    assert a[sc.USAGE_COST] == pytest.approx(expected, abs=1e-12)


def test_converse_nova_golden_cost(telemetry: Any, emu: BedrockEmulator) -> None:
    emu.push(BedrockReply(input_tokens=1000, output_tokens=200, cache_read_input_tokens=500))
    converse(client(emu), model=NOVA)
    a = attrs(telemetry.one_llm_span())
    assert (a[sc.USAGE_INPUT_TOKENS], a[sc.USAGE_CACHE_READ_INPUT_TOKENS], a[sc.USAGE_OUTPUT_TOKENS]) == (
        1500,
        500,
        200,
    )
    # Nova Pro: $0.80 input, $0.20 cache read, $3.20 output per million tokens.
    golden = (1000 * 0.80 + 500 * 0.20 + 200 * 3.20) / 1e6
    assert a[sc.USAGE_COST] == pytest.approx(golden, abs=1e-12)
    assert a[sc.USAGE_COST] == pytest.approx(
        aws_price(NOVA, input_tokens=1500, cache_read_tokens=500, output_tokens=200), abs=1e-12
    )


def test_profile_ids_and_arns_are_priced_as_routed(telemetry: Any, emu: BedrockEmulator) -> None:
    usage = {"input_tokens": 1000, "output_tokens": 100}
    arn = f"arn:aws:bedrock:us-east-1:123456789012:inference-profile/{GLOBAL_CLAUDE}"
    # genai-prices lists Opus 4.8 under regional profiles but not under `apac.`: priced as the base model.
    apac = "apac.anthropic.claude-opus-4-8-v1:0"
    models = [CLAUDE, US_CLAUDE, GLOBAL_CLAUDE, arn, apac]
    emu.push(*(BedrockReply(**usage) for _ in models))
    c = client(emu)
    for model in models:
        converse(c, model=model)
    spans = by_start(telemetry)
    regional = (1000 * 3.30 + 100 * 16.50) / 1e6
    global_ = (1000 * 3 + 100 * 15) / 1e6
    costs = [attrs(s)[sc.USAGE_COST] for s in spans]
    assert costs[:4] == pytest.approx([regional, regional, global_, global_], abs=1e-12)
    assert [attrs(s)[sc.REQUEST_MODEL] for s in spans] == models
    a = attrs(spans[4])
    assert a[sc.RESPONSE_MODEL] == "anthropic.claude-opus-4-8-v1:0"
    assert a[sc.USAGE_COST] == pytest.approx(
        aws_price("anthropic.claude-opus-4-8-v1:0", input_tokens=1000, output_tokens=100), abs=1e-12
    )
    assert all(sc.RESPONSE_MODEL not in attrs(s) for s in spans[:4])


def test_price_override_for_a_profile_id_wins(instrument_with: Any, emu: BedrockEmulator) -> None:
    t = instrument_with(prices={US_CLAUDE: {"input": 1.0, "output": 2.0}})
    emu.push(BedrockReply(input_tokens=1000, output_tokens=1000))
    converse(client(emu))
    a = attrs(t.one_llm_span())
    assert a[sc.COST_SOURCE] == "override" and a[sc.USAGE_COST] == pytest.approx(0.003, abs=1e-12)


def test_unknown_model_is_unpriced(telemetry: Any, emu: BedrockEmulator) -> None:
    app_profile = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3"
    emu.push(BedrockReply(input_tokens=10, output_tokens=5), BedrockReply(input_tokens=10, output_tokens=5))
    c = client(emu)
    converse(c, model="acme.unknown-model-v1:0")
    converse(c, model=app_profile)
    for span in telemetry.llm_spans():
        a = attrs(span)
        assert a[sc.USAGE_INPUT_TOKENS] == 10 and a[sc.USAGE_OUTPUT_TOKENS] == 5
        assert sc.USAGE_COST not in a and sc.COST_SOURCE not in a
    assert telemetry.total(sc.METRIC_UNPRICED) == 2
    assert telemetry.total(sc.METRIC_COST) == 0


def test_missing_usage_is_marked_not_invented(telemetry: Any, emu: BedrockEmulator) -> None:
    emu.push(BedrockReply(omit_usage=True), BedrockReply(omit_usage=True, token_headers=False))
    c = client(emu)
    converse(c)
    invoke(c, NOVA, "nova")
    for span in telemetry.llm_spans():
        a = attrs(span)
        assert a[sc.USAGE_SOURCE] == "missing"
        assert sc.USAGE_INPUT_TOKENS not in a and sc.USAGE_COST not in a


# --- ConverseStream ------------------------------------------------------------------------------


def test_converse_stream_to_exhaustion(telemetry: Any, emu: BedrockEmulator) -> None:
    emu.push(BedrockReply(**GOLDEN, chunks=4, stop_reason="max_tokens"))
    response = converse_stream(client(emu))
    stream = response["stream"]
    assert isinstance(stream, EventStream)
    events = list(stream)
    assert [next(iter(e)) for e in events][-2:] == ["messageStop", "metadata"]
    span = telemetry.one_llm_span()
    a = attrs(span)
    assert a[sc.REQUEST_STREAM] is True
    assert a[sc.USAGE_INPUT_TOKENS] == 6300 and a[sc.USAGE_OUTPUT_TOKENS] == 400
    assert a[sc.USAGE_COST] == pytest.approx(0.013365, abs=1e-12)
    assert a[sc.RESPONSE_FINISH_REASONS] == ("max_tokens",)
    assert a[sc.STREAM_CHUNKS] == len(events) == 8
    assert sc.STREAM_INCOMPLETE not in a
    ttfc = a[sc.RESPONSE_TIME_TO_FIRST_CHUNK]
    assert 0 < ttfc <= (span.end_time - span.start_time) / 1e9
    assert len(telemetry.points(sc.METRIC_TIME_TO_FIRST_CHUNK)) == 1


def test_converse_stream_break_then_close_ends_once(telemetry: Any, emu: BedrockEmulator) -> None:
    emu.push(BedrockReply(chunks=10))
    stream = converse_stream(client(emu))["stream"]
    for _ in stream:
        break
    assert telemetry.llm_spans() == []
    stream.close()
    stream.close()
    a = attrs(telemetry.one_llm_span())
    assert a[sc.STREAM_INCOMPLETE] is True and a[sc.STREAM_CHUNKS] == 1
    assert a[sc.USAGE_SOURCE] == "missing"  # usage comes with the last event, never read


def test_converse_stream_resumed_after_break_is_one_call(telemetry: Any, emu: BedrockEmulator) -> None:
    emu.push(BedrockReply(chunks=3, input_tokens=7, output_tokens=3))
    stream = converse_stream(client(emu))["stream"]
    first = next(iter(stream))
    rest = list(stream)
    assert first == {"messageStart": {"role": "assistant"}} and next(iter(rest[-1])) == "metadata"
    a = attrs(telemetry.one_llm_span())
    assert a[sc.STREAM_CHUNKS] == 1 + len(rest) and a[sc.USAGE_INPUT_TOKENS] == 7
    assert sc.STREAM_INCOMPLETE not in a


def test_converse_stream_is_no_context_manager_as_before(instrument_with: Any, emu: BedrockEmulator) -> None:
    def enter() -> str:
        stream = converse_stream(client(emu))["stream"]
        try:
            with stream:
                pass
        except TypeError as exc:
            stream.close()
            return str(exc)
        return "entered"

    plain = enter()
    t = instrument_with()
    assert enter() == plain == "'EventStream' object does not support the context manager protocol"
    assert attrs(t.one_llm_span())[sc.STREAM_INCOMPLETE] is True


def test_converse_stream_garbage_collected_ends_span(telemetry: Any, emu: BedrockEmulator) -> None:
    emu.push(BedrockReply(chunks=10))
    response = converse_stream(client(emu))
    next(iter(response["stream"]))
    assert telemetry.llm_spans() == []
    del response
    gc.collect()
    assert attrs(telemetry.one_llm_span())[sc.STREAM_INCOMPLETE] is True


def test_converse_stream_error_event_is_recorded_and_reraised(telemetry: Any, emu: BedrockEmulator) -> None:
    emu.push(BedrockReply(chunks=5, error_after=4))
    got: list[Any] = []
    with pytest.raises(EventStreamError) as caught:
        for event in converse_stream(client(emu))["stream"]:
            got.append(event)
    assert caught.value.response["Error"]["Code"] == "modelStreamErrorException"
    span = telemetry.one_llm_span()
    a = attrs(span)
    assert a[sc.ERROR_TYPE] == "EventStreamError"
    assert a[sc.STREAM_INCOMPLETE] is True and a[sc.STREAM_CHUNKS] == len(got) == 4
    assert span.status.status_code is StatusCode.ERROR


def test_converse_stream_cut_midway_is_recorded_and_reraised(telemetry: Any, emu: BedrockEmulator) -> None:
    emu.push(BedrockReply(chunks=8, cut_after=3))
    got: list[Any] = []
    with pytest.raises(Exception) as caught:  # whatever botocore raises for a broken body, unchanged
        for event in converse_stream(client(emu))["stream"]:
            got.append(event)
    a = attrs(telemetry.one_llm_span())
    assert a[sc.ERROR_TYPE] == type(caught.value).__qualname__
    assert a[sc.STREAM_INCOMPLETE] is True and a[sc.STREAM_CHUNKS] == len(got) == 3


def test_consumer_exception_inside_loop_propagates(telemetry: Any, emu: BedrockEmulator) -> None:
    emu.push(BedrockReply(chunks=5))
    stream = converse_stream(client(emu))["stream"]
    with pytest.raises(KeyError):
        for _ in stream:
            raise KeyError("consumer bug")
    stream.close()
    assert attrs(telemetry.one_llm_span())[sc.STREAM_INCOMPLETE] is True


# --- InvokeModel ---------------------------------------------------------------------------------


def test_invoke_model_anthropic_body_usage_and_golden_cost(telemetry: Any, emu: BedrockEmulator) -> None:
    emu.push(BedrockReply(**GOLDEN, id="msg_bdrk_01golden", stop_reason="end_turn"))
    response = invoke(client(emu), US_CLAUDE, "anthropic")
    body = response["body"]
    assert type(body) is StreamingBody
    assert json.loads(body.read())["usage"]["cache_read_input_tokens"] == 5000
    a = attrs(telemetry.one_llm_span())
    assert a[sc.REQUEST_MODEL] == US_CLAUDE
    assert a[sc.RESPONSE_ID] == "msg_bdrk_01golden"
    assert sc.RESPONSE_MODEL not in a  # the body's bare model name would lose the profile's price
    assert a[sc.RESPONSE_FINISH_REASONS] == ("end_turn",)
    assert a[sc.REQUEST_MAX_TOKENS] == 50 and a[sc.REQUEST_TEMPERATURE] == 0.5
    assert a[sc.USAGE_INPUT_TOKENS] == 6300 and a[sc.USAGE_OUTPUT_TOKENS] == 400
    assert a[sc.USAGE_CACHE_READ_INPUT_TOKENS] == 5000 and a[sc.USAGE_CACHE_CREATION_INPUT_TOKENS] == 1000
    assert a[sc.USAGE_COST] == pytest.approx(
        (300 * 3.30 + 5000 * 0.33 + 1000 * 4.125 + 400 * 16.50) / 1e6, abs=1e-12
    )


def test_invoke_model_anthropic_1_hour_writes_come_from_the_body(
    telemetry: Any, emu: BedrockEmulator
) -> None:
    emu.push(
        BedrockReply(
            input_tokens=300,
            output_tokens=400,
            cache_read_input_tokens=5000,
            cache_write_1h_input_tokens=1000,
        )
    )
    invoke(client(emu), GLOBAL_CLAUDE, "anthropic")["body"].read()
    a = attrs(telemetry.one_llm_span())
    assert a[sc.USAGE_CACHE_CREATION_1H_INPUT_TOKENS] == 1000  # the headers have no time-to-live split
    assert a[sc.USAGE_COST] == pytest.approx(0.0144, abs=1e-12)


@pytest.mark.parametrize("headers", [True, False], ids=["token-headers", "body-counts"])
@pytest.mark.parametrize(("model", "family"), [(NOVA, "nova"), (LLAMA, "llama")])
def test_invoke_model_other_families(
    telemetry: Any, emu: BedrockEmulator, model: str, family: str, headers: bool
) -> None:
    emu.push(
        BedrockReply(
            text="Paris.",
            input_tokens=120,
            output_tokens=30,
            token_headers=headers,
            stop_reason="length" if family == "llama" else "end_turn",
        )
    )
    response = invoke(client(emu), model, family)
    a = attrs(telemetry.one_llm_span())
    assert a[sc.USAGE_INPUT_TOKENS] == 120 and a[sc.USAGE_OUTPUT_TOKENS] == 30
    assert a[sc.RESPONSE_FINISH_REASONS] == (("length",) if family == "llama" else ("end_turn",))
    assert a[sc.REQUEST_MAX_TOKENS] == 64
    assert a[sc.USAGE_COST] == pytest.approx(aws_price(model, input_tokens=120, output_tokens=30), abs=1e-12)
    if family == "llama":
        # Llama 3.1 70B Instruct: $0.72 per million tokens, in and out.
        assert a[sc.USAGE_COST] == pytest.approx(150 * 0.72e-6, abs=1e-12)
        assert sc.RESPONSE_MODEL not in a  # genai-prices knows the `us.` profile id itself
        assert json.loads(response["body"].read())["generation"] == "Paris."
    else:
        assert json.loads(response["body"].read())["output"]["message"]["content"] == [{"text": "Paris."}]


def test_invoke_model_body_is_handed_back_intact(instrument_with: Any, emu: BedrockEmulator) -> None:
    def run() -> list[Any]:
        c = client(emu)
        emu.push(BedrockReply(id="msg_bdrk_same", text="a b c d e f"))
        response = invoke(c, US_CLAUDE, "anthropic")
        body = response["body"]
        pieces = [body.read(7), body.read(7), body.read()]
        emu.push(BedrockReply(text="a b c"))
        lines = list(invoke(c, LLAMA, "llama")["body"].iter_lines())
        emu.push(BedrockReply(text="a b c"))
        with invoke(c, NOVA, "nova")["body"] as raw:  # a StreamingBody's `with` gives its raw stream
            whole = raw.read()
        return [type(body).__name__, response["contentType"], pieces, lines, whole]

    plain = run()
    t = instrument_with()
    assert run() == plain
    assert len(t.llm_spans()) == 3


def test_invoke_model_body_read_failure_reaches_the_caller_on_read(
    instrument_with: Any, emu: BedrockEmulator
) -> None:
    emu.push(BedrockReply(cut_body=True))
    body = invoke(client(emu), NOVA, "nova")["body"]
    with pytest.raises(Exception) as plain:  # whatever botocore raises for a cut body
        body.read()
    t = instrument_with()
    emu.push(BedrockReply(cut_body=True))
    body = invoke(client(emu), NOVA, "nova")["body"]  # returns: the failure waits for the read
    with pytest.raises(type(plain.value)):
        body.read()
    span = t.one_llm_span()
    assert attrs(span)[sc.ERROR_TYPE] == type(plain.value).__qualname__
    assert span.status.status_code is StatusCode.ERROR


# --- InvokeModelWithResponseStream ---------------------------------------------------------------


def test_invoke_stream_anthropic_usage_from_message_events(telemetry: Any, emu: BedrockEmulator) -> None:
    emu.push(BedrockReply(**GOLDEN, id="msg_bdrk_stream", chunks=3))
    response = invoke(client(emu), US_CLAUDE, "anthropic", stream=True)
    assert isinstance(response["body"], EventStream)
    events = [json.loads(e["chunk"]["bytes"]) for e in response["body"]]
    assert events[-1]["type"] == "message_stop"
    a = attrs(telemetry.one_llm_span())
    assert a[sc.REQUEST_STREAM] is True and a[sc.RESPONSE_ID] == "msg_bdrk_stream"
    assert a[sc.USAGE_INPUT_TOKENS] == 6300 and a[sc.USAGE_OUTPUT_TOKENS] == 400
    assert a[sc.USAGE_CACHE_READ_INPUT_TOKENS] == 5000 and a[sc.USAGE_CACHE_CREATION_INPUT_TOKENS] == 1000
    assert a[sc.USAGE_COST] == pytest.approx(0.013365, abs=1e-12)
    assert a[sc.RESPONSE_FINISH_REASONS] == ("end_turn",)
    assert a[sc.STREAM_CHUNKS] == len(events) and sc.STREAM_INCOMPLETE not in a


def test_invoke_stream_cut_short_keeps_message_start_usage(telemetry: Any, emu: BedrockEmulator) -> None:
    emu.push(BedrockReply(**GOLDEN, chunks=10))
    stream = invoke(client(emu), US_CLAUDE, "anthropic", stream=True)["body"]
    it = iter(stream)
    next(it)
    next(it)
    stream.close()
    a = attrs(telemetry.one_llm_span())
    assert a[sc.STREAM_INCOMPLETE] is True and a[sc.STREAM_CHUNKS] == 2
    assert a[sc.USAGE_INPUT_TOKENS] == 6300  # message_start's counts survive a stream cut short


def test_invoke_stream_error_event(telemetry: Any, emu: BedrockEmulator) -> None:
    emu.push(BedrockReply(**GOLDEN, chunks=5, error_after=3, stream_error="internalServerException"))
    with pytest.raises(EventStreamError) as caught:
        list(invoke(client(emu), US_CLAUDE, "anthropic", stream=True)["body"])
    assert caught.value.response["Error"]["Code"] == "internalServerException"
    a = attrs(telemetry.one_llm_span())
    assert a[sc.ERROR_TYPE] == "EventStreamError" and a[sc.STREAM_INCOMPLETE] is True
    assert a[sc.USAGE_INPUT_TOKENS] == 6300


@pytest.mark.parametrize(("model", "family"), [(NOVA, "nova"), (LLAMA, "llama")])
def test_invoke_stream_other_families(telemetry: Any, emu: BedrockEmulator, model: str, family: str) -> None:
    emu.push(BedrockReply(input_tokens=120, output_tokens=30, cache_read_input_tokens=0, chunks=3))
    events = list(invoke(client(emu), model, family, stream=True)["body"])
    a = attrs(telemetry.one_llm_span())
    assert a[sc.USAGE_INPUT_TOKENS] == 120 and a[sc.USAGE_OUTPUT_TOKENS] == 30
    assert a[sc.STREAM_CHUNKS] == len(events) and sc.STREAM_INCOMPLETE not in a
    assert a[sc.USAGE_COST] == pytest.approx(aws_price(model, input_tokens=120, output_tokens=30), abs=1e-12)


def test_invoke_stream_llama_cut_short_keeps_running_counts(telemetry: Any, emu: BedrockEmulator) -> None:
    emu.push(BedrockReply(input_tokens=120, output_tokens=30, chunks=3))
    stream = invoke(client(emu), LLAMA, "llama", stream=True)["body"]
    it = iter(stream)
    next(it)
    next(it)
    stream.close()
    a = attrs(telemetry.one_llm_span())
    assert a[sc.STREAM_INCOMPLETE] is True
    assert (a[sc.USAGE_INPUT_TOKENS], a[sc.USAGE_OUTPUT_TOKENS]) == (120, 20)


# --- errors and what the caller sees ---------------------------------------------------------------


@pytest.mark.parametrize(("status", "name"), [(429, "ThrottlingException"), (400, "ValidationException")])
def test_http_errors_recorded_and_reraised_unchanged(
    instrument_with: Any, emu: BedrockEmulator, status: int, name: str
) -> None:
    emu.push(BedrockReply(status=status))
    with pytest.raises(ClientError) as plain:
        converse(client(emu))
    t = instrument_with()
    emu.push(BedrockReply(status=status), BedrockReply(status=status))
    c = client(emu)
    with pytest.raises(ClientError) as instrumented:
        converse(c)
    with pytest.raises(getattr(c.exceptions, name)):
        invoke(c, US_CLAUDE, "anthropic", stream=True)
    assert type(instrumented.value).__name__ == type(plain.value).__name__ == name
    assert instrumented.value.response["Error"] == plain.value.response["Error"]
    for span in t.llm_spans():
        a = attrs(span)
        assert a[sc.ERROR_TYPE] == name and a[sc.USAGE_SOURCE] == "missing"
        assert span.status.status_code is StatusCode.ERROR
    durations = t.points(sc.METRIC_OPERATION_DURATION)
    assert [p.attributes[sc.ERROR_TYPE] for p in durations] == [name]
    assert sum(p.count for p in durations) == 2


def test_retries_are_one_call_with_one_span(telemetry: Any, emu: BedrockEmulator) -> None:
    emu.push(BedrockReply(status=503), BedrockReply(input_tokens=9, output_tokens=1))
    response = converse(client(emu, attempts=2))
    assert response["ResponseMetadata"]["RetryAttempts"] == 1 and emu.served.requests == 2
    a = attrs(telemetry.one_llm_span())
    assert sc.ERROR_TYPE not in a and a[sc.USAGE_INPUT_TOKENS] == 9


def _run_everything(emu: BedrockEmulator) -> list[Any]:
    """Every operation, with the replies fixed, returning what the caller saw."""
    seen: list[Any] = []
    c = client(emu)

    def strip(response: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in response.items() if k != "ResponseMetadata"}

    emu.push(BedrockReply(text="one two three", input_tokens=5, output_tokens=3))
    seen.append(strip(converse(c, system=SYSTEM)))
    emu.push(BedrockReply(text="one two three", input_tokens=5, output_tokens=3))
    response = converse_stream(c)
    seen.append((sorted(response), isinstance(response["stream"], EventStream), list(response["stream"])))
    emu.push(BedrockReply(id="msg_bdrk_x", text="one two three", input_tokens=5, output_tokens=3))
    response = invoke(c, US_CLAUDE, "anthropic")
    seen.append((sorted(response), response["contentType"], response["body"].read()))
    emu.push(BedrockReply(id="msg_bdrk_y", text="one two three", input_tokens=5, output_tokens=3))
    response = invoke(c, US_CLAUDE, "anthropic", stream=True)
    events = [json.loads(e["chunk"]["bytes"]) for e in response["body"]]
    seen.append((sorted(response), [{k: v for k, v in e.items() if k != "message"} for e in events]))
    return seen


def test_caller_sees_identical_results_with_and_without_instrumentation(
    instrument_with: Any, emu: BedrockEmulator
) -> None:
    plain = _run_everything(emu)
    t = instrument_with()
    assert _run_everything(emu) == plain
    assert len(t.llm_spans()) == 4


def test_no_content_and_no_secrets_by_default(telemetry: Any, emu: BedrockEmulator) -> None:
    emu.push(BedrockReply(text="The capital is Paris."), BedrockReply(text="The capital is Paris."))
    c = client(emu)
    converse(c, system=SYSTEM)
    invoke(c, US_CLAUDE, "anthropic")["body"].read()
    assert len(telemetry.llm_spans()) == 2
    for span in telemetry.spans():
        a = attrs(span)
        assert sc.INPUT_MESSAGES not in a and sc.OUTPUT_MESSAGES not in a
        blob = repr(a)
        for secret in (ACCESS_KEY, SECRET_KEY, "AWS4-HMAC", "Paris", "capital of France", "terse"):
            assert secret not in blob


def test_content_capture_opt_in(instrument_with: Any, emu: BedrockEmulator) -> None:
    t = instrument_with(capture_content=True)
    emu.push(
        BedrockReply(text="The capital is Paris."),
        BedrockReply(text="Streamed Paris.", chunks=3),
        BedrockReply(text="Invoked Paris."),
        BedrockReply(text="Chunked Paris.", chunks=3),
    )
    c = client(emu)
    converse(c, system=SYSTEM)
    list(converse_stream(c)["stream"])
    invoke(c, US_CLAUDE, "anthropic")["body"].read()
    list(invoke(c, NOVA, "nova", stream=True)["body"])
    first, second, third, fourth = by_start(t)
    question = semconv_text("user", "What is the capital of France?")
    assert json.loads(attrs(first)[sc.INPUT_MESSAGES]) == [semconv_text("system", "You are terse."), question]
    assert json.loads(attrs(second)[sc.INPUT_MESSAGES]) == [question]
    assert json.loads(attrs(first)[sc.OUTPUT_MESSAGES]) == [
        semconv_text("assistant", "The capital is Paris.", finish_reason="end_turn")
    ]
    assert (
        json.loads(attrs(second)[sc.OUTPUT_MESSAGES])[0]["parts"]
        == semconv_text("", "Streamed Paris.")["parts"]
    )
    sent = json.loads(attrs(third)[sc.INPUT_MESSAGES])
    assert sent[0] == semconv_text("system", "You are terse.") and len(sent) == 1 + len(
        CLAUDE_BODY["messages"]
    )
    assert (
        json.loads(attrs(third)[sc.OUTPUT_MESSAGES])[0]["parts"]
        == semconv_text("", "Invoked Paris.")["parts"]
    )
    assert (
        json.loads(attrs(fourth)[sc.OUTPUT_MESSAGES])[0]["parts"]
        == semconv_text("", "Chunked Paris.")["parts"]
    )


# --- what is and is not a recorded call ------------------------------------------------------------


def test_other_services_pass_through_untouched(telemetry: Any, emu: BedrockEmulator) -> None:
    with pytest.raises(ClientError):
        client(emu, "bedrock").list_foundation_models()  # the control plane, not bedrock-runtime
    with pytest.raises(ClientError):
        client(emu, "s3").list_buckets()
    assert telemetry.llm_spans() == []
    assert telemetry.points(sc.METRIC_OPERATION_DURATION) == []
    assert [r.path for r in emu.requests] == ["/foundation-models", "/"]


def test_anthropic_bedrock_client_is_counted_once(telemetry: Any, emu: BedrockEmulator) -> None:
    from anthropic import AnthropicBedrock

    sdk = AnthropicBedrock(
        base_url=emu.base_url,
        aws_access_key=ACCESS_KEY,
        aws_secret_key=SECRET_KEY,
        aws_region="us-east-1",
        max_retries=0,
    )
    emu.push(BedrockReply(input_tokens=11, output_tokens=2), BedrockReply(input_tokens=12, output_tokens=3))
    sdk.messages.create(model=US_CLAUDE, max_tokens=16, messages=[{"role": "user", "content": "Hi"}])
    converse(client(emu))
    first, second = by_start(telemetry)
    assert attrs(first)[sc.USAGE_INPUT_TOKENS] == 11  # the anthropic SDK's call, recorded once
    assert attrs(second)[sc.USAGE_INPUT_TOKENS] == 12  # boto3's own call
    assert {attrs(s)[sc.PROVIDER_NAME] for s in (first, second)} == {"aws.bedrock"}
    assert emu.served.requests == 2


def test_nested_instrumented_call_records_once(telemetry: Any, emu: BedrockEmulator) -> None:
    token = in_llm_call.set(True)
    try:
        converse(client(emu))
    finally:
        in_llm_call.reset(token)
    assert telemetry.llm_spans() == []


def test_endpoints_option_names_the_provider(instrument_with: Any, emu: BedrockEmulator) -> None:
    t = instrument_with(endpoints={"127.0.0.1": "my_gateway"})
    converse(client(emu))
    assert attrs(t.one_llm_span())[sc.PROVIDER_NAME] == "my_gateway"


def test_uninstrument_restores_make_api_call(emu: BedrockEmulator) -> None:
    original = BaseClient.__dict__["_make_api_call"]
    otel_llm_usage.instrument(providers=["bedrock"])
    try:
        assert BaseClient.__dict__["_make_api_call"] is not original
        assert BaseClient.__dict__["_make_api_call"].__wrapped__ is original
    finally:
        otel_llm_usage.uninstrument()
    assert BaseClient.__dict__["_make_api_call"] is original


def test_providers_option_narrows(instrument_with: Any, emu: BedrockEmulator) -> None:
    t = instrument_with(providers=["anthropic"])
    converse(client(emu))
    assert t.llm_spans() == []


def test_internal_failure_never_reaches_the_caller(
    telemetry: Any, emu: BedrockEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("extractor bug")

    monkeypatch.setattr(provider, "converse_result", broken)
    monkeypatch.setattr(provider, "describe_request", broken)
    monkeypatch.setattr(read.ConverseStreamAccumulator, "add", broken)
    c = client(emu)
    assert converse(c)["output"]["message"]["content"]  # describe_request fails: passed through
    assert telemetry.llm_spans() == []
    monkeypatch.undo()
    monkeypatch.setattr(provider, "converse_result", broken)
    monkeypatch.setattr(read.ConverseStreamAccumulator, "add", broken)
    assert converse(c)["stopReason"] == "end_turn"
    assert next(iter(list(converse_stream(c)["stream"])[-1])) == "metadata"
    assert len(telemetry.llm_spans()) == 2
    assert {"bedrock.start", "bedrock.result", "stream.chunk"} <= reported_sites()


def test_budget_exceeded_propagates_before_the_request(telemetry: Any, emu: BedrockEmulator) -> None:
    from otel_llm_usage import BudgetExceeded
    from tests.conftest import RefuseEveryCall

    telemetry.instrumentor.recorder.add_listener(RefuseEveryCall())
    with pytest.raises(BudgetExceeded):
        converse(client(emu))
    assert emu.requests == []


def test_patched_when_the_application_imports_boto3() -> None:
    script = textwrap.dedent(
        """
        import sys
        import otel_llm_usage
        otel_llm_usage.instrument(providers=["bedrock"])
        assert "botocore" not in sys.modules and "boto3" not in sys.modules, "instrument() imported boto3"
        import boto3
        from botocore.client import BaseClient
        from wrapt import FunctionWrapper
        assert isinstance(BaseClient.__dict__["_make_api_call"], FunctionWrapper), "not patched on import"
        otel_llm_usage.uninstrument()
        assert not isinstance(BaseClient.__dict__["_make_api_call"], FunctionWrapper), "not restored"
        print("ok")
        """
    )
    root = str(Path(__file__).resolve().parents[2])
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=root, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


# --- pure extraction ---------------------------------------------------------------------------


def test_usage_from_converse_and_nova_shapes() -> None:
    assert read.usage_from(None) is None and read.usage_from({}) is None
    converse_usage = {
        "inputTokens": 3,
        "outputTokens": 7,
        "totalTokens": 25,
        "cacheReadInputTokens": 4,
        "cacheWriteInputTokens": 11,
        "cacheDetails": [{"ttl": "1h", "inputTokens": 6}, {"ttl": "5m", "inputTokens": 5}],
    }
    usage = read.usage_from(converse_usage)
    assert usage is not None and usage.valid()
    assert (usage.input, usage.cache_read, usage.cache_write, usage.cache_write_1h, usage.output) == (
        18,
        4,
        11,
        6,
        7,
    )
    assert usage.total == converse_usage["totalTokens"]  # Bedrock's total counts the cache
    details_only = read.usage_from(
        {"inputTokens": 1, "outputTokens": 1, "cacheDetails": converse_usage["cacheDetails"]}
    )
    assert details_only is not None and (details_only.input, details_only.cache_write_1h) == (12, 6)
    nova = read.usage_from(
        {"inputTokens": 10, "outputTokens": 2, "cacheReadInputTokenCount": 5, "cacheWriteInputTokenCount": 1}
    )
    assert nova is not None and (nova.input, nova.cache_read, nova.cache_write) == (16, 5, 1)


def test_header_and_metrics_usage() -> None:
    headers = {
        "x-amzn-bedrock-input-token-count": "300",
        "x-amzn-bedrock-output-token-count": "400",
        "x-amzn-bedrock-cache-read-input-token-count": "5000",
        "x-amzn-bedrock-cache-write-input-token-count": "1000",
    }
    usage = read.header_usage(headers)
    assert usage is not None and (usage.input, usage.cache_read, usage.cache_write, usage.output) == (
        6300,
        5000,
        1000,
        400,
    )
    assert read.header_usage({"x-amzn-bedrock-input-token-count": "many"}) is None
    assert read.header_usage(None) is None
    metrics = {"inputTokenCount": 3, "outputTokenCount": 2, "cacheReadInputTokenCount": 10}
    assert read.metrics_usage(metrics) == read.TokenUsage(input=13, output=2, cache_read=10)
    assert read.metrics_usage({"invocationLatency": 5}) is None


def test_foundation_model() -> None:
    assert read.foundation_model(US_CLAUDE) == CLAUDE
    assert read.foundation_model(GLOBAL_CLAUDE) == CLAUDE
    assert read.foundation_model(f"us-gov.{CLAUDE}") == CLAUDE
    assert read.foundation_model(CLAUDE) == CLAUDE
    assert read.foundation_model(f"arn:aws:bedrock:eu-west-1::foundation-model/{CLAUDE}") == CLAUDE
    assert read.foundation_model(f"arn:aws:bedrock:eu-west-1:1:inference-profile/eu.{CLAUDE}") == CLAUDE
    assert read.foundation_model("acme.unknown-model-v1:0") == "acme.unknown-model-v1:0"


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(10**12), 10**12), st.floats(), st.text(max_size=8)),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
usage_keys = st.sampled_from(
    ["inputTokens", "outputTokens", "totalTokens", "cacheReadInputTokens", "cacheWriteInputTokens",
     "cacheDetails", "ttl", "cacheReadInputTokenCount", "cacheWriteInputTokenCount", "inputTokenCount",
     "outputTokenCount", "input_tokens", "output_tokens", "cache_read_input_tokens",
     "cache_creation_input_tokens", "cache_creation", "prompt_token_count", "generation_token_count", "usage",
     "x-amzn-bedrock-input-token-count", "x-amzn-bedrock-output-token-count",
     "x-amzn-bedrock-cache-read-input-token-count", "x-amzn-bedrock-cache-write-input-token-count"]
)  # fmt: skip
payloads = st.dictionaries(
    usage_keys,
    st.one_of(
        json_values, st.sampled_from(["1h", "5m", "12", "-3"]), st.dictionaries(usage_keys, json_values)
    ),
    max_size=8,
)
# Detail lists whose entries look like Bedrock's, so the time-to-live split is exercised too.
details = st.lists(
    st.fixed_dictionaries({"ttl": st.sampled_from(["1h", "5m", "2h"]), "inputTokens": json_values})
)


@settings(max_examples=500, deadline=None)
@given(payloads, details)
def test_usage_extraction_never_raises_and_is_valid(
    payload: dict[str, Any], cache_details: list[Any]
) -> None:
    with_details = {**payload, "cacheDetails": cache_details}
    for ledger in (
        read.usage_from(payload),
        read.usage_from(with_details),
        read.metrics_usage(payload),
        read.header_usage(payload),
        read.llama_usage(payload),
        read.body_usage(payload, payload),
        read.body_usage({"usage": with_details}, None),
    ):
        assert ledger is None or ledger.valid()


event_keys = st.sampled_from(
    ["type", "message", "delta", "usage", "generation", "metadata", "messageStop", "contentBlockDelta",
     "amazon-bedrock-invocationMetrics", "stop_reason", "stopReason", "text"]
)  # fmt: skip
events = st.one_of(payloads, st.dictionaries(event_keys, st.one_of(json_values, payloads), max_size=5))


@settings(max_examples=200, deadline=None)
@given(st.lists(events, max_size=6), st.booleans())
def test_stream_accumulators_never_raise(chunks: list[dict[str, Any]], capture: bool) -> None:
    invoke_acc = read.InvokeStreamAccumulator(capture)
    converse_acc = read.ConverseStreamAccumulator(capture)
    for chunk in chunks:
        assert invoke_acc.add({"chunk": {"bytes": json.dumps(chunk, default=str).encode()}}) is False
        assert converse_acc.add(chunk) is False
    for result in (invoke_acc.result(), converse_acc.result()):
        assert result.usage is None or result.usage.valid()
