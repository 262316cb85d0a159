"""The Bedrock Runtime emulator, driven by boto3's real `bedrock-runtime` client with no instrumentation."""

from __future__ import annotations

import base64
import http.client
import json
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import boto3
import pytest
from botocore.config import Config
from botocore.eventstream import EventStreamBuffer
from botocore.exceptions import ClientError, EventStreamError

from emulators import BedrockEmulator, BedrockReply, _eventstream
from emulators import anthropic as anthropic_emulator
from emulators.bedrock import DEFAULT_TEXT, model_family

CLAUDE = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
NOVA = "amazon.nova-pro-v1:0"
LLAMA = "meta.llama3-1-70b-instruct-v1:0"
MESSAGES: list[Any] = [{"role": "user", "content": [{"text": "Say something short."}]}]
BODIES: dict[str, dict[str, Any]] = {
    CLAUDE: {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Say something short."}],
    },
    NOVA: {"schemaVersion": "messages-v1", "messages": MESSAGES, "inferenceConfig": {"maxTokens": 64}},
    LLAMA: {"prompt": "Say something short.", "max_gen_len": 64},
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
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"total_max_attempts": attempts, "mode": "standard"}),
    )


def raw_post(
    emu: BedrockEmulator, path: str, body: object, signed: bool = True
) -> tuple[int, dict[str, str], bytes]:
    """POST with the standard library, to see the exact bytes botocore would parse."""
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=10)
    headers = {"Content-Type": "application/json"}
    if signed:  # the emulator checks that a request is signed, not the signature
        headers["Authorization"] = "AWS4-HMAC-SHA256 Credential=test/20261129/us-east-1/bedrock/aws4_request"
    try:
        conn.request("POST", path, body=json.dumps(body), headers=headers)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def frames(raw: bytes) -> list[Any]:
    buffer = EventStreamBuffer()
    buffer.add_data(raw)  # the buffer checks both CRCs of every message
    return list(buffer)


def chunks(events: Any) -> list[dict[str, Any]]:
    return [json.loads(event["chunk"]["bytes"]) for event in events]


# --- Converse ------------------------------------------------------------------------------------


def test_converse_reports_cache_apart_from_input(emu: BedrockEmulator) -> None:
    emu.push(
        BedrockReply(
            text="Paris.",
            input_tokens=300,
            output_tokens=400,
            cache_read_input_tokens=5000,
            cache_write_input_tokens=1000,
            cache_write_1h_input_tokens=200,
            latency_ms=321,
        )
    )
    response = client(emu).converse(modelId=CLAUDE, messages=MESSAGES, inferenceConfig={"maxTokens": 64})
    assert response["output"] == {"message": {"role": "assistant", "content": [{"text": "Paris."}]}}
    assert response["stopReason"] == "end_turn"
    assert response["metrics"] == {"latencyMs": 321}
    assert response["usage"] == {
        "inputTokens": 300,
        "outputTokens": 400,
        "totalTokens": 6900,
        "cacheReadInputTokens": 5000,
        "cacheWriteInputTokens": 1200,
        "cacheDetails": [{"ttl": "1h", "inputTokens": 200}, {"ttl": "5m", "inputTokens": 1000}],
    }
    request = emu.requests[-1]
    assert request.path == f"/model/{quote(CLAUDE, safe='')}/converse"  # botocore escapes the id's ":"
    assert request.json["messages"] == MESSAGES and request.json["inferenceConfig"] == {"maxTokens": 64}
    served = emu.served
    assert (served.requests, served.input_tokens, served.output_tokens) == (1, 300, 400)
    assert (served.cache_read_input_tokens, served.cache_write_input_tokens) == (5000, 1200)


def test_converse_defaults_and_no_cache_fields(emu: BedrockEmulator) -> None:
    response = client(emu).converse(modelId="acme.unknown-model-v1:0", messages=MESSAGES)
    usage = response["usage"]
    assert response["output"]["message"]["content"][0]["text"] == DEFAULT_TEXT
    assert set(usage) == {"inputTokens", "outputTokens", "totalTokens"}
    assert usage["totalTokens"] == usage["inputTokens"] + usage["outputTokens"] > 0
    assert usage["outputTokens"] == len(DEFAULT_TEXT.split())


def test_converse_stream_events_and_framing(emu: BedrockEmulator) -> None:
    emu.push(
        BedrockReply(
            text="one two three", chunks=3, input_tokens=12, output_tokens=3, stop_reason="max_tokens"
        )
    )
    events = list(client(emu).converse_stream(modelId=NOVA, messages=MESSAGES)["stream"])
    assert [next(iter(event)) for event in events] == [
        "messageStart",
        "contentBlockDelta",
        "contentBlockDelta",
        "contentBlockDelta",
        "contentBlockStop",
        "messageStop",
        "metadata",
    ]
    assert "".join(e["contentBlockDelta"]["delta"]["text"] for e in events[1:4]) == "one two three"
    assert events[5] == {"messageStop": {"stopReason": "max_tokens"}}
    assert events[6]["metadata"] == {
        "usage": {"inputTokens": 12, "outputTokens": 3, "totalTokens": 15},
        "metrics": {"latencyMs": 120},
    }

    emu.push(BedrockReply(text="a b", chunks=2))
    status, headers, raw = raw_post(emu, f"/model/{NOVA}/converse-stream", {"messages": MESSAGES})
    assert status == 200 and headers["content-type"] == "application/vnd.amazon.eventstream"
    assert headers["transfer-encoding"] == "chunked"
    messages = frames(raw)
    assert [m.headers[":event-type"] for m in messages] == [
        "messageStart",
        "contentBlockDelta",
        "contentBlockDelta",
        "contentBlockStop",
        "messageStop",
        "metadata",
    ]
    for message in messages:
        assert message.headers[":message-type"] == "event"
        assert message.headers[":content-type"] == "application/json"
        assert "p" in json.loads(message.payload)  # Bedrock's padding, which botocore ignores


# --- InvokeModel ---------------------------------------------------------------------------------


def test_invoke_anthropic_body_and_token_headers(emu: BedrockEmulator) -> None:
    emu.push(
        BedrockReply(
            id="msg_bdrk_fixed",
            input_tokens=300,
            output_tokens=400,
            cache_read_input_tokens=5000,
            cache_write_1h_input_tokens=1000,
        )
    )
    response = client(emu).invoke_model(modelId=CLAUDE, body=json.dumps(BODIES[CLAUDE]))
    body = json.loads(response["body"].read())
    assert body["id"] == "msg_bdrk_fixed" and body["model"] == "claude-sonnet-4-5-20250929"
    assert body["usage"]["input_tokens"] == 300 and body["usage"]["cache_read_input_tokens"] == 5000
    assert body["usage"]["cache_creation"] == {
        "ephemeral_5m_input_tokens": 0,
        "ephemeral_1h_input_tokens": 1000,
    }
    headers = response["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-amzn-bedrock-input-token-count"] == "300"
    assert headers["x-amzn-bedrock-output-token-count"] == "400"
    assert headers["x-amzn-bedrock-cache-read-input-token-count"] == "5000"
    assert headers["x-amzn-bedrock-cache-write-input-token-count"] == "1000"
    assert response["contentType"] == "application/json"


def test_invoke_nova_and_llama_bodies(emu: BedrockEmulator) -> None:
    c = client(emu)
    emu.push(BedrockReply(text="Hi.", input_tokens=20, output_tokens=2, cache_read_input_tokens=7))
    nova = json.loads(c.invoke_model(modelId=NOVA, body=json.dumps(BODIES[NOVA]))["body"].read())
    assert nova == {
        "output": {"message": {"content": [{"text": "Hi."}], "role": "assistant"}},
        "stopReason": "end_turn",
        "usage": {
            "inputTokens": 20,
            "outputTokens": 2,
            "totalTokens": 29,
            "cacheReadInputTokenCount": 7,
            "cacheWriteInputTokenCount": 0,
        },
    }
    emu.push(BedrockReply(text="Hi.", input_tokens=20, output_tokens=2, token_headers=False))
    response = c.invoke_model(modelId=LLAMA, body=json.dumps(BODIES[LLAMA]))
    assert json.loads(response["body"].read()) == {
        "generation": "Hi.",
        "stop_reason": "stop",
        "prompt_token_count": 20,
        "generation_token_count": 2,
    }
    assert "x-amzn-bedrock-input-token-count" not in response["ResponseMetadata"]["HTTPHeaders"]


@pytest.mark.parametrize("model", [CLAUDE, NOVA, LLAMA])
def test_invoke_stream_ends_with_invocation_metrics(emu: BedrockEmulator, model: str) -> None:
    emu.push(BedrockReply(text="one two three", chunks=3, input_tokens=12, output_tokens=3))
    response = client(emu).invoke_model_with_response_stream(modelId=model, body=json.dumps(BODIES[model]))
    assert response["contentType"] == "application/json"
    payloads = chunks(response["body"])
    assert payloads[-1]["amazon-bedrock-invocationMetrics"]["inputTokenCount"] == 12
    assert payloads[-1]["amazon-bedrock-invocationMetrics"]["outputTokenCount"] == 3
    if model == CLAUDE:
        assert payloads[0]["type"] == "message_start"
        assert payloads[-2]["usage"]["output_tokens"] == 3
    elif model == NOVA:
        assert [next(iter(p)) for p in payloads[:-1]] == [
            "messageStart",
            "contentBlockDelta",
            "contentBlockDelta",
            "contentBlockDelta",
            "contentBlockStop",
            "messageStop",
        ]
        assert payloads[-1]["metadata"]["usage"]["inputTokens"] == 12
    else:
        assert "".join(p["generation"] for p in payloads) == "one two three"
        assert [p["prompt_token_count"] for p in payloads] == [12, None, None]
        assert [p["generation_token_count"] for p in payloads] == [1, 2, 3]
        assert [p["stop_reason"] for p in payloads] == [None, None, "stop"]
    assert emu.served.input_tokens == 12 and emu.served.output_tokens == 3


def test_invoke_stream_framing_is_base64_chunks(emu: BedrockEmulator) -> None:
    status, headers, raw = raw_post(emu, f"/model/{LLAMA}/invoke-with-response-stream", BODIES[LLAMA])
    assert status == 200 and headers["x-amzn-bedrock-content-type"] == "application/json"
    for message in frames(raw):
        assert message.headers == {
            ":event-type": "chunk",
            ":content-type": "application/json",
            ":message-type": "event",
        }
        wrapper = json.loads(message.payload)
        assert set(wrapper) == {"bytes", "p"}
        assert "generation" in json.loads(base64.b64decode(wrapper["bytes"]))


def test_anthropic_bedrock_sdk_reads_the_same_wire(emu: BedrockEmulator) -> None:
    from anthropic import AnthropicBedrock

    emu.push(BedrockReply(input_tokens=20, output_tokens=4), BedrockReply(input_tokens=21, output_tokens=5))
    sdk = AnthropicBedrock(
        base_url=emu.base_url,
        aws_access_key="AKIAEXAMPLE",
        aws_secret_key="s",
        aws_region="us-east-1",
        max_retries=0,
    )
    message = sdk.messages.create(model=CLAUDE, max_tokens=16, messages=[{"role": "user", "content": "Hi"}])
    assert message.usage.input_tokens == 20 and message.content[0].text == DEFAULT_TEXT
    events = list(
        sdk.messages.create(
            model=CLAUDE, max_tokens=16, messages=[{"role": "user", "content": "Hi"}], stream=True
        )
    )
    assert events[-2].usage.output_tokens == 5 and events[-1].type == "message_stop"


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "name"),
    [(429, "ThrottlingException"), (400, "ValidationException"), (500, "InternalServerException")],
)
def test_http_errors_are_botocore_client_errors(emu: BedrockEmulator, status: int, name: str) -> None:
    c = client(emu)
    emu.push(BedrockReply(status=status))
    with pytest.raises(ClientError) as caught:
        c.converse(modelId=CLAUDE, messages=MESSAGES)
    assert type(caught.value) is getattr(c.exceptions, name)
    assert caught.value.response["Error"]["Code"] == name
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert caught.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-errortype"].startswith(f"{name}:")
    assert emu.served.requests == 1 and emu.served.input_tokens == 0


def test_error_type_and_message_can_be_scripted(emu: BedrockEmulator) -> None:
    c = client(emu)
    emu.push(BedrockReply(status=429, error_type="ServiceQuotaExceededException", message="quota"))
    with pytest.raises(c.exceptions.ServiceQuotaExceededException, match="quota"):
        c.invoke_model(modelId=NOVA, body=json.dumps(BODIES[NOVA]))


@pytest.mark.parametrize(
    "kind", ["modelStreamErrorException", "internalServerException", "throttlingException"]
)
def test_exception_mid_stream(emu: BedrockEmulator, kind: str) -> None:
    emu.push(BedrockReply(chunks=4, error_after=3, stream_error=kind))
    got: list[Any] = []
    with pytest.raises(EventStreamError) as caught:
        for event in client(emu).converse_stream(modelId=CLAUDE, messages=MESSAGES)["stream"]:
            got.append(event)
    assert len(got) == 3
    assert caught.value.response["Error"]["Code"] == kind
    status, _, raw = raw_post(emu, f"/model/{CLAUDE}/converse-stream", {"messages": MESSAGES})
    assert status == 200 and all(m.headers[":message-type"] == "event" for m in frames(raw))


def test_exception_frame_headers(emu: BedrockEmulator) -> None:
    emu.push(BedrockReply(error_after=1))
    _, _, raw = raw_post(emu, f"/model/{CLAUDE}/invoke-with-response-stream", BODIES[CLAUDE])
    last = frames(raw)[-1]
    assert last.headers == {
        ":exception-type": "modelStreamErrorException",
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    assert json.loads(last.payload)["originalStatusCode"] == 500


def test_stream_cut_and_body_cut_break_the_connection(emu: BedrockEmulator) -> None:
    c = client(emu)
    emu.push(BedrockReply(chunks=5, cut_after=2))
    got: list[Any] = []
    with pytest.raises(Exception) as caught:  # whatever botocore raises for a broken body
        for event in c.converse_stream(modelId=CLAUDE, messages=MESSAGES)["stream"]:
            got.append(event)
    assert len(got) == 2 and not isinstance(caught.value, EventStreamError)
    emu.push(BedrockReply(cut_body=True))
    response = c.invoke_model(modelId=NOVA, body=json.dumps(BODIES[NOVA]))
    with pytest.raises(Exception):  # noqa: B017 - the type is botocore's, whatever it is
        response["body"].read()


def test_requests_are_validated(emu: BedrockEmulator) -> None:
    c = client(emu)
    with pytest.raises(c.exceptions.ValidationException, match="anthropic_version"):
        c.invoke_model(modelId=CLAUDE, body=json.dumps({"messages": []}))
    with pytest.raises(c.exceptions.ValidationException, match="model identifier is invalid"):
        c.invoke_model(modelId="acme.unknown-v1:0", body=json.dumps({"input": "x"}))
    status, headers, raw = raw_post(emu, f"/model/{NOVA}/converse", {"messages": MESSAGES}, signed=False)
    assert status == 403 and headers["x-amzn-errortype"].startswith("MissingAuthenticationTokenException:")
    status, _, raw = raw_post(emu, "/model/x/unknown-op", {})
    assert status == 404 and json.loads(raw) == {"message": "Unknown operation"}
    assert emu.served.requests == 0


# --- model ids and scripting ----------------------------------------------------------------------


def test_profile_ids_and_arns_reach_the_emulator_decoded(emu: BedrockEmulator) -> None:
    arn = f"arn:aws:bedrock:us-east-1:123456789012:inference-profile/global.{CLAUDE.split('.', 1)[1]}"
    client(emu).converse(modelId=arn, messages=MESSAGES)
    assert emu.requests[-1].path.endswith("/converse") and "%2F" in emu.requests[-1].path
    response = client(emu).invoke_model(modelId=arn, body=json.dumps(BODIES[CLAUDE]))
    assert json.loads(response["body"].read())["type"] == "message"


def test_model_family() -> None:
    assert model_family("global.anthropic.claude-sonnet-4-5-20250929-v1:0") == "anthropic"
    assert model_family("us.amazon.nova-lite-v1:0") == "nova"
    assert (
        model_family("arn:aws:bedrock:us-east-1::foundation-model/meta.llama3-1-8b-instruct-v1:0") == "llama"
    )
    app_profile = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc"
    assert model_family(app_profile, {"anthropic_version": "x"}) == "anthropic"
    assert model_family(app_profile, {"prompt": "x"}) == "llama"
    assert model_family(app_profile, {"messages": []}) == "nova"
    assert model_family(app_profile, {"inputText": "x"}) is None


def test_omit_usage_and_raw_usage(emu: BedrockEmulator) -> None:
    c = client(emu)
    emu.push(
        BedrockReply(omit_usage=True),
        BedrockReply(raw_usage={"inputTokens": 1, "outputTokens": 2, "totalTokens": 3}),
    )
    assert "usage" not in c.converse(modelId=NOVA, messages=MESSAGES)
    assert c.converse(modelId=NOVA, messages=MESSAGES)["usage"] == {
        "inputTokens": 1,
        "outputTokens": 2,
        "totalTokens": 3,
    }
    emu.push(BedrockReply(omit_usage=True))
    events = list(c.converse_stream(modelId=NOVA, messages=MESSAGES)["stream"])
    assert events[-1]["metadata"] == {"metrics": {"latencyMs": 120}}


def test_gate_holds_the_stream_until_set(emu: BedrockEmulator) -> None:
    gate = threading.Event()
    emu.push(BedrockReply(chunks=3, gate=gate, gate_after=2))
    stream = iter(client(emu).converse_stream(modelId=NOVA, messages=MESSAGES)["stream"])
    assert next(stream) == {"messageStart": {"role": "assistant"}}
    assert "contentBlockDelta" in next(stream)
    assert emu.served.output_tokens == 0  # usage comes last, behind the gate
    gate.set()
    assert next(iter(list(stream)[-1])) == "metadata"
    assert emu.served.output_tokens == len(DEFAULT_TEXT.split())


def test_other_services_get_unknown_operation(emu: BedrockEmulator) -> None:
    with pytest.raises(ClientError):
        client(emu, "bedrock").list_foundation_models()
    assert emu.served.requests == 0


def test_event_stream_encoder_is_shared_with_the_anthropic_emulator() -> None:
    assert anthropic_emulator.event_stream_frame is _eventstream.event_stream_frame
    frame = _eventstream.event_frame("chunk", b'{"a":1}')
    (message,) = frames(frame)
    assert message.payload == b'{"a":1}'
    assert message.headers == {
        ":event-type": "chunk",
        ":content-type": "application/json",
        ":message-type": "event",
    }
    corrupt = frame[:-1] + bytes([frame[-1] ^ 1])
    with pytest.raises(Exception, match=r"(?i)crc|checksum"):
        frames(corrupt)
