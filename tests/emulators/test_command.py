"""`python -m emulators`: started as a user would, read for its URLs, driven by the real SDKs."""

from __future__ import annotations

import json
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import anthropic
import boto3
import cohere
import groq
import openai
import pytest
from google import genai
from google.genai import types as genai_types

from emulators import anthropic as anthropic_emulator
from emulators import bedrock as bedrock_emulator
from emulators import cohere as cohere_emulator
from emulators import gemini as gemini_emulator
from emulators import groq as groq_emulator
from emulators import mistral as mistral_emulator
from emulators import openai as openai_emulator
from tests.conftest import Telemetry

try:  # mistralai 2.0 moved the client
    from mistralai.client import Mistral
except ImportError:  # pragma: no cover - mistralai 1.x
    from mistralai import Mistral  # type: ignore[attr-defined,no-redef]

EMULATOR_MODULES = {
    "gemini": gemini_emulator,
    "bedrock": bedrock_emulator,
    "cohere": cohere_emulator,
    "mistral": mistral_emulator,
    "groq": groq_emulator,
}
ROOT = Path(__file__).resolve().parents[2]
MESSAGES = [{"role": "user", "content": "Say something short."}]
READY = "Each reply is deterministic"
TIMEOUT_S = 60


class Command:
    """The command in a subprocess, its stdout read line by line by a thread (readline has no timeout)."""

    def __init__(self, *args: str) -> None:
        # `-m` from the repository root finds the emulators/ folder, as it does for a user there.
        self.process = subprocess.Popen(
            [sys.executable, "-m", "emulators", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        self._stderr: str | None = None
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def read_until(self, marker: str) -> list[str]:
        """The lines printed up to and including the first one starting with `marker`."""
        while True:
            line = self._lines.get(timeout=TIMEOUT_S)
            assert line is not None, f"the command ended: {self.output} {self.stderr()}"
            self.output.append(line)
            if line.startswith(marker):
                return self.output

    def stderr(self) -> str:
        """What the command wrote to stderr, once it has ended."""
        if self._stderr is None:
            if self.process.poll() is None or self.process.stderr is None:
                return ""
            self._stderr = self.process.stderr.read()
        return self._stderr

    def setting(self, name: str) -> str:
        """The value the command told the user to give `name` (an environment variable)."""
        for line in self.output:
            match = re.search(rf"\b{name}=(\S+)", line)
            if match:
                return match.group(1)
        raise AssertionError(f"{name} not printed in {self.output}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.process.send_signal(sig)
        code = self.process.wait(timeout=TIMEOUT_S)
        self.read_until("Stopped.")
        return code

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=TIMEOUT_S)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def command() -> Iterator[type[Command]]:
    started: list[Command] = []

    class Started(Command):
        def __init__(self, *args: str) -> None:
            super().__init__(*args)
            started.append(self)

    yield Started
    for each in started:
        each.close()


def expected_openai_prompt_tokens() -> int:
    # The emulator's documented estimate for an unscripted reply: 8 + a quarter of the JSON length.
    return 8 + len(json.dumps(MESSAGES)) // 4


def ask_claude(base_url: str) -> anthropic.types.Message:
    claude = anthropic.Anthropic(base_url=base_url, api_key="test", max_retries=0)
    return claude.messages.create(model="claude-haiku-4-5", max_tokens=64, messages=MESSAGES)  # type: ignore[arg-type]


def test_all_serves_openai_and_anthropic_on_one_port(command: type[Command]) -> None:
    emulators = command("--port", "0")
    lines = emulators.read_until(READY)
    base = re.search(r"at (http://127\.0\.0\.1:(\d+))", lines[0])
    assert base is not None and int(base.group(2)) > 0, lines[0]
    for provider in ("openai", "anthropic", "gemini", "bedrock", "cohere", "mistral", "groq"):
        mounted = f"{base.group(1)}/{provider}"
        assert any(line.startswith(f"{provider} ") and mounted in line for line in lines), provider
    assert any("GET .../models lists gpt-4o-mini" in line for line in lines)

    assert emulators.setting("OPENAI_BASE_URL") == f"{base.group(1)}/openai/v1"
    client = openai.OpenAI(base_url=emulators.setting("OPENAI_BASE_URL"), api_key="test", max_retries=0)
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    assert reply.choices[0].message.content == openai_emulator.DEFAULT_TEXT
    assert reply.model == "gpt-4o-mini"
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == expected_openai_prompt_tokens()
    assert reply.usage.completion_tokens == len(openai_emulator.DEFAULT_TEXT.split())
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens

    message = ask_claude(emulators.setting("ANTHROPIC_BASE_URL"))
    assert message.content[0].type == "text"
    assert message.content[0].text == anthropic_emulator.DEFAULT_TEXT
    assert message.usage.input_tokens > 0
    assert message.usage.output_tokens == len(anthropic_emulator.DEFAULT_TEXT.split())

    assert emulators.stop() == 0


def test_one_provider_is_served_at_the_root_with_streams(command: type[Command]) -> None:
    emulators = command("--port", "0", "--provider", "openai")
    lines = emulators.read_until(READY)
    assert not any(line.startswith("anthropic ") for line in lines)
    base_url = emulators.setting("OPENAI_BASE_URL")
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", base_url), base_url
    client = openai.OpenAI(base_url=base_url, api_key="test", max_retries=0)
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o",
            messages=MESSAGES,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == openai_emulator.DEFAULT_TEXT
    usage = chunks[-1].usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (
        expected_openai_prompt_tokens(),
        len(openai_emulator.DEFAULT_TEXT.split()),
    )
    assert emulators.stop(signal.SIGINT) == 0


def test_an_instrumented_client_records_what_the_command_served(
    command: type[Command], telemetry: Telemetry
) -> None:
    emulators = command("--port", "0", "--provider", "anthropic")
    emulators.read_until(READY)
    message = ask_claude(emulators.setting("ANTHROPIC_BASE_URL"))
    attributes = telemetry.one_llm_span().attributes or {}
    assert attributes["gen_ai.usage.input_tokens"] == message.usage.input_tokens
    assert attributes["gen_ai.usage.output_tokens"] == message.usage.output_tokens
    assert emulators.stop() == 0


def test_a_strict_openai_server_is_served_and_an_instrumented_stream_still_works(
    command: type[Command], telemetry: Telemetry
) -> None:
    emulators = command("--port", "0", "--provider", "openai", "--openai-stream-options", "reject")
    emulators.read_until(READY)
    client = openai.OpenAI(base_url=emulators.setting("OPENAI_BASE_URL"), api_key="test", max_retries=0)
    with pytest.raises(openai.BadRequestError, match="stream_options"):
        client.chat.completions.create(
            model="gpt-4o",
            messages=MESSAGES,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
    chunks = list(client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))  # type: ignore[arg-type]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == openai_emulator.DEFAULT_TEXT
    spans = telemetry.llm_spans()
    assert len(spans) == 2 and (spans[1].attributes or {})["llm_usage.stream.usage_retried"] is True
    assert emulators.stop() == 0


def test_a_path_outside_every_mount_is_a_404_naming_the_mounts(command: type[Command]) -> None:
    emulators = command("--port", "0")
    emulators.read_until(READY)
    url = emulators.setting("OPENAI_BASE_URL").removesuffix("/openai/v1") + "/v1/chat/completions"
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(urllib.request.Request(url, data=b"{}", method="POST"), timeout=TIMEOUT_S)
    assert caught.value.code == 404
    assert "/openai/" in json.loads(caught.value.read())["error"]["message"]
    assert emulators.stop() == 0


def test_a_busy_port_and_a_bad_port_fail_with_a_message(command: type[Command]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = command("--port", str(taken.getsockname()[1]), "--provider", "cohere")
        assert busy.process.wait(timeout=TIMEOUT_S) == 1
        assert "cannot listen on 127.0.0.1:" in busy.stderr()

    bad = command("--port", "70000")
    assert bad.process.wait(timeout=TIMEOUT_S) == 2
    assert "--port" in bad.stderr() and "70000" in bad.stderr()


def test_every_other_sdk_reaches_its_emulator_under_all(command: type[Command]) -> None:
    emulators = command("--port", "0")
    emulators.read_until(READY)
    root = emulators.setting("OPENAI_BASE_URL").removesuffix("/openai/v1")
    words = {name: len(module.DEFAULT_TEXT.split()) for name, module in EMULATOR_MODULES.items()}

    gemini = genai.Client(api_key="test", http_options=genai_types.HttpOptions(base_url=f"{root}/gemini"))
    usage = gemini.models.generate_content(model="gemini-2.5-flash", contents="hi").usage_metadata
    assert usage is not None and usage.candidates_token_count == words["gemini"]

    bedrock = boto3.client(
        "bedrock-runtime",
        endpoint_url=f"{root}/bedrock",
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    reply = bedrock.converse(
        modelId="amazon.nova-lite-v1:0", messages=[{"role": "user", "content": [{"text": "hi"}]}]
    )
    assert reply["usage"]["outputTokens"] == words["bedrock"]

    chat = cohere.ClientV2(api_key="test", base_url=f"{root}/cohere").chat(
        model="command-a-03-2025", messages=[{"role": "user", "content": "hi"}]
    )
    assert chat.usage is not None and chat.usage.billed_units is not None
    assert chat.usage.billed_units.output_tokens == words["cohere"]

    completion = Mistral(api_key="test", server_url=f"{root}/mistral").chat.complete(
        model="mistral-small-latest", messages=[{"role": "user", "content": "hi"}]
    )
    assert completion.usage.completion_tokens == words["mistral"]

    answer = groq.Groq(api_key="test", base_url=f"{root}/groq", max_retries=0).chat.completions.create(
        model="llama-3.3-70b-versatile", messages=[{"role": "user", "content": "hi"}]
    )
    assert answer.usage is not None and answer.usage.completion_tokens == words["groq"]
    assert emulators.stop() == 0
