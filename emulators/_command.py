"""``python -m emulators``: serve the provider emulators on a port until interrupted.

One provider is served at the root of the port, exactly where its SDK expects the real API; ``all``
serves every provider on the same port, each under ``/<provider>`` (see :mod:`._mount`).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import TextIO

from . import groq as groq_emulator
from . import openai as openai_emulator
from ._mount import MountedEmulators
from ._server import EmulatorServer
from .anthropic import AnthropicEmulator
from .bedrock import BedrockEmulator
from .cohere import CohereEmulator
from .gemini import GeminiEmulator
from .groq import GroqEmulator
from .mistral import MistralEmulator
from .openai import OpenAIEmulator

__all__ = ["PROVIDERS", "main"]

DEFAULT_PORT = 8089
# A server that runs for days keeps only the latest requests (tests read them; the command does not).
_KEPT_REQUESTS = 32
_ANY_MODEL = "any model name is accepted"


@dataclass(frozen=True)
class Provider:
    """What the command tells a user about one emulator, and how to build it."""

    name: str
    factory: Callable[[], EmulatorServer]
    serves: str
    models: str
    # SDK settings for a base URL (the emulator's `url` plus `base_path`).
    usage: Callable[[str], Sequence[str]]
    base_path: str = ""


def _listed(names: Sequence[str]) -> str:
    return f"{_ANY_MODEL}; GET .../models lists {', '.join(names)}"


PROVIDERS: dict[str, Provider] = {
    p.name: p
    for p in (
        Provider(
            "openai",
            OpenAIEmulator,
            "POST /v1/chat/completions, /v1/responses, /v1/embeddings, /v1/completions; GET /v1/models; "
            "the same under Azure OpenAI's /openai/deployments/{deployment}/...",
            _listed([name for name, _ in openai_emulator._MODELS]),
            lambda url: [f"OPENAI_BASE_URL={url} OPENAI_API_KEY=test"],
            "/v1",
        ),
        Provider(
            "anthropic",
            AnthropicEmulator,
            "POST /v1/messages, /v1/messages/count_tokens; Bedrock's /model/{model}/invoke[-with-response-"
            "stream] and Vertex AI's /v1/projects/.../models/{model}:rawPredict",
            _ANY_MODEL,
            lambda url: [f"ANTHROPIC_BASE_URL={url} ANTHROPIC_API_KEY=test"],
        ),
        Provider(
            "gemini",
            GeminiEmulator,
            "POST /{v1beta|v1}/models/{model}:generateContent, :streamGenerateContent, :embedContent, "
            ":batchEmbedContents, :countTokens; Vertex AI's /v1/projects/.../models/{model}:{method}",
            _ANY_MODEL,
            lambda url: [f"GOOGLE_GEMINI_BASE_URL={url} GEMINI_API_KEY=test"],
        ),
        Provider(
            "bedrock",
            BedrockEmulator,
            "POST /model/{model}/converse, /converse-stream, /invoke, /invoke-with-response-stream "
            "(Anthropic Claude, Amazon Nova and Meta Llama bodies)",
            f"{_ANY_MODEL} by Converse; InvokeModel needs an anthropic., amazon.nova or meta.llama model id",
            lambda url: [
                f"AWS_ENDPOINT_URL_BEDROCK_RUNTIME={url} AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test "
                "AWS_DEFAULT_REGION=us-east-1"
            ],
        ),
        Provider(
            "cohere",
            CohereEmulator,
            "POST /v2/chat, /v2/embed",
            _ANY_MODEL,
            lambda url: [f"CO_API_URL={url} CO_API_KEY=test"],
        ),
        Provider(
            "mistral",
            MistralEmulator,
            "POST /v1/chat/completions, /v1/fim/completions, /v1/agents/completions, /v1/embeddings",
            _ANY_MODEL,
            lambda url: [f'Mistral(api_key="test", server_url="{url}")'],
        ),
        Provider(
            "groq",
            GroqEmulator,
            "POST /openai/v1/chat/completions; GET /openai/v1/models",
            _listed([model[0] for model in groq_emulator._MODELS]),
            lambda url: [f"GROQ_BASE_URL={url} GROQ_API_KEY=test"],
        ),
    )
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m emulators",
        description="Serve loopback emulators of LLM provider APIs (scripted, deterministic replies with "
        "exact token usage) until interrupted.",
    )
    parser.add_argument(
        "--provider",
        choices=[*PROVIDERS, "all"],
        default="all",
        help="the API to emulate; 'all' serves each provider under /<provider> on the one port (default)",
    )
    parser.add_argument(
        "--port", type=_port, default=DEFAULT_PORT, help=f"0 picks a free port (default {DEFAULT_PORT})"
    )
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1)")
    parser.add_argument(
        "--openai-stream-options",
        choices=openai_emulator.STREAM_OPTIONS_MODES,
        default="accept",
        help="how the openai emulator answers a request carrying stream_options: accept it (default), "
        "ignore it (no usage chunk), or reject it with 400 or 422 as a strict server does",
    )
    return parser.parse_args(argv)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535)")
    return port


def describe(server: MountedEmulators, mounted: dict[str, Provider]) -> list[str]:
    """What the command prints once listening: the base URLs, what each serves, how to point an SDK."""
    lines = [f"Emulating LLM provider APIs at {server.url} (Ctrl-C stops)", ""]
    for prefix, provider in mounted.items():
        base_url = server.mount_url(prefix) + provider.base_path
        lines.append(f"{provider.name:<11} {base_url}")
        lines.append(f"  serves    under {server.mount_url(prefix)}: {provider.serves}")
        lines.append(f"  models    {provider.models}")
        lines.extend(f"  use       {setting}" for setting in provider.usage(base_url))
        lines.append("")
    lines.append("Each reply is deterministic, with usage the SDKs read; any API key is accepted.")
    return lines


def serve(args: argparse.Namespace, out: TextIO) -> int:
    names = list(PROVIDERS) if args.provider == "all" else [args.provider]
    mounted = {("" if args.provider != "all" else f"/{name}"): PROVIDERS[name] for name in names}
    emulators: dict[str, EmulatorServer] = {}
    for prefix, provider in mounted.items():
        emulators[prefix] = emulator = provider.factory()
        emulator.keep_requests = _KEPT_REQUESTS
        if isinstance(emulator, OpenAIEmulator):
            emulator.stream_options = args.openai_stream_options
    server = MountedEmulators(emulators, args.host, args.port)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # Installed before listening, so an early Ctrl-C or SIGTERM also ends the command cleanly.
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            server.start()
        except OSError as exc:
            print(f"python -m emulators: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
            return 1
        print("\n".join(describe(server, mounted)), file=out, flush=True)
        stop.wait()
        server.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("Stopped.", file=out, flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return serve(parse_args(argv), sys.stdout)
