"""Span status descriptions never carry a key the server echoed, nor a URL's query string."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from opentelemetry.trace import StatusCode

import otel_llm_usage
from emulators import Reply
from otel_llm_usage._redact import MAX_LENGTH, redact

KEY = "sk-proj-Xy7ZabcdEFGH1234567890ijklMNOP"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"Error code: 401 - Incorrect API key provided: {KEY}.", KEY),
        ("invalid x-api-key sk-ant-api03-AbCdEf0123456789_ghIJ-kl", "sk-ant-api03-AbCdEf0123456789_ghIJ-kl"),
        ("GET https://host/v1/models?key=AIzaSyA1234567890abcdefghijklmno&alt=sse", "AIzaSyA1234567890"),
        ("a key AIzaSyA1234567890abcdefghijklmno in the body", "AIzaSyA1234567890"),
        ("header Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig was refused", "eyJhbGci"),
        ("AccessKeyId AKIAIOSFODNN7EXAMPLE is not valid", "AKIAIOSFODNN7EXAMPLE"),
        ("secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY leaked", "wJalrXUtnFEMI"),
        ("request had api_key=plainsecretvalue9 and more", "plainsecretvalue9"),
        ('{"token": "tok_live_abcdefgh"}', "tok_live_abcdefgh"),
        ("proxy https://user:hunter2pass@proxy.local/v1 failed", "hunter2pass"),
        ("groq gsk_abcdefghijklmnopqrstuvwxyz0123 rejected", "gsk_abcdefghijklmnop"),
    ],
)
def test_key_shaped_tokens_and_query_strings_are_redacted(text: str, secret: str) -> None:
    out = redact(text)
    assert secret not in out and "[REDACTED]" in out


def test_ordinary_error_text_is_kept_and_long_text_is_cut() -> None:
    plain = "Rate limit reached for gpt-4o on tokens per min (TPM): Limit 30000, Used 29000, Requested 2000."
    assert redact(plain) == plain
    assert redact("model_not_found: The model `gpt-5x` does not exist") == (
        "model_not_found: The model `gpt-5x` does not exist"
    )
    long = redact("word " * 10_000)
    assert len(long) == MAX_LENGTH and long.endswith("…")


def test_openai_401_echoing_the_key_is_redacted_in_the_span(telemetry: Any, openai_emulator: Any) -> None:
    openai_emulator.push(
        Reply(
            status=401,
            message=f"Incorrect API key provided: {KEY}. See https://platform.example/keys?key={KEY}",
        )
    )
    client = openai.OpenAI(base_url=openai_emulator.base_url, api_key=KEY, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as raised:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert KEY in str(raised.value)  # the application still sees the SDK's own exception, unchanged
    span = telemetry.one_llm_span()
    assert span.status.status_code is StatusCode.ERROR
    description = span.status.description or ""
    assert "Incorrect API key provided" in description and "[REDACTED]" in description
    assert KEY not in description and KEY[:12] not in description
    assert len(description) <= MAX_LENGTH
    for value in (span.attributes or {}).values():
        assert KEY not in str(value)


def test_a_run_ended_by_an_exception_gets_a_redacted_status(telemetry: Any) -> None:
    with pytest.raises(RuntimeError), otel_llm_usage.run("agent"):
        raise RuntimeError(f"upstream refused key {KEY}")
    (span,) = [s for s in telemetry.spans() if s.name == "invoke_agent agent"]
    assert KEY not in (span.status.description or "") and "[REDACTED]" in (span.status.description or "")
