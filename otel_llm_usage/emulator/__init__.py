"""Loopback HTTP emulators of LLM provider APIs, for tests and demos that need no network."""

from ._server import RecordedRequest
from .anthropic import AnthropicEmulator, AnthropicReply, AnthropicServedTotals
from .openai import OpenAIEmulator, Reply, ServedTotals

__all__ = [
    "AnthropicEmulator",
    "AnthropicReply",
    "AnthropicServedTotals",
    "OpenAIEmulator",
    "RecordedRequest",
    "Reply",
    "ServedTotals",
]
