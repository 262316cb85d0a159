"""Session and user ids never reach an LLM provider; propagation to the user's services is opt-in."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from opentelemetry import baggage, propagate, trace
from opentelemetry import context as otel_context

import otel_llm_usage
from emulators import AnthropicEmulator
from otel_llm_usage import semconv as sc

SID = "alice@example.com/conv-7"
MSGS: list[Any] = [{"role": "user", "content": "Hi"}]


@pytest.fixture(scope="module")
def _server() -> Iterator[AnthropicEmulator]:
    with AnthropicEmulator() as server:
        yield server


@pytest.fixture
def emu(_server: AnthropicEmulator) -> AnthropicEmulator:
    _server.reset()
    return _server


@pytest.fixture
def global_sdk(telemetry: Any) -> Iterator[Any]:
    """The test's SDK tracer provider as the global one: the Anthropic SDK then propagates context."""
    saved = (trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE)
    trace._TRACER_PROVIDER_SET_ONCE = trace.Once()
    trace.set_tracer_provider(telemetry.tracer_provider)
    yield telemetry
    trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE = saved


def call(emu: AnthropicEmulator) -> dict[str, str]:
    c = anthropic.Anthropic(base_url=emu.base_url, api_key="sk-ant-test", max_retries=0)
    c.messages.create(model="claude-sonnet-4-5", max_tokens=16, messages=MSGS)
    return {k.lower(): v for k, v in emu.requests[-1].headers.items()}


def assert_no_ids(headers: dict[str, str]) -> None:
    assert "traceparent" in headers  # the SDK does propagate context: only the ids are held back
    assert "session.id" not in headers.get("baggage", "") and "user.id" not in headers.get("baggage", "")
    for value in headers.values():
        assert "alice" not in value


def test_by_default_no_session_id_leaves_the_process(global_sdk: Any, emu: AnthropicEmulator) -> None:
    with otel_llm_usage.session(SID, user_id="alice"):
        assert baggage.get_baggage(sc.SESSION_ID) is None
        headers = call(emu)
    assert_no_ids(headers)
    assert dict(global_sdk.one_llm_span().attributes or {})[sc.SESSION_ID] == SID  # still on the span


def test_opted_in_propagation_reaches_own_services_never_the_provider(
    global_sdk: Any, emu: AnthropicEmulator
) -> None:
    ctx_token = otel_context.attach(baggage.set_baggage("feature", "beta"))
    try:
        with otel_llm_usage.session(SID, user_id="alice", propagate=True):
            own_service: dict[str, str] = {}
            propagate.inject(own_service)  # what a call to the application's own service carries
            headers = call(emu)
            with otel_llm_usage.run("agent", session_id="alice-other-conv"):
                in_run = call(emu)
    finally:
        otel_context.detach(ctx_token)
    assert "session.id=alice%40example.com%2Fconv-7" in own_service["baggage"]
    assert_no_ids(headers)
    assert_no_ids(in_run)
    assert "feature=beta" in headers["baggage"]  # the user's other baggage is left alone


def test_environment_opt_in(global_sdk: Any, emu: AnthropicEmulator, monkeypatch: Any, caplog: Any) -> None:
    monkeypatch.setenv("OTEL_LLM_USAGE_PROPAGATE_SESSION", "true")
    with otel_llm_usage.session(SID):
        assert baggage.get_baggage(sc.SESSION_ID) == SID
        assert_no_ids(call(emu))
    monkeypatch.setenv("OTEL_LLM_USAGE_PROPAGATE_SESSION", "sometimes")
    with otel_llm_usage.session(SID):
        assert baggage.get_baggage(sc.SESSION_ID) is None
    assert any("OTEL_LLM_USAGE_PROPAGATE_SESSION" in r.getMessage() for r in caplog.records)
    with pytest.raises(ValueError, match="propagate"):
        otel_llm_usage.session(SID, propagate="yes")  # type: ignore[arg-type]


def test_an_upstream_session_id_is_read_but_not_forwarded_to_the_provider(
    global_sdk: Any, emu: AnthropicEmulator
) -> None:
    incoming = propagate.extract({"baggage": "session.id=alice-upstream"})
    token = otel_context.attach(incoming)
    try:
        headers = call(emu)
    finally:
        otel_context.detach(token)
    assert_no_ids(headers)
    assert dict(global_sdk.one_llm_span().attributes or {})[sc.SESSION_ID] == "alice-upstream"
