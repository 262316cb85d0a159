"""Loopback HTTP emulators of LLM provider APIs, for tests and demos that need no network."""

from ._server import RecordedRequest
from .anthropic import AnthropicEmulator, AnthropicReply, AnthropicServedTotals
from .gemini import GeminiEmulator, GeminiReply, GeminiServedTotals
from .openai import OpenAIEmulator, Reply, ServedTotals

__all__ = [
    "AnthropicEmulator",
    "AnthropicReply",
    "AnthropicServedTotals",
    "GeminiEmulator",
    "GeminiReply",
    "GeminiServedTotals",
    "OpenAIEmulator",
    "RecordedRequest",
    "Reply",
    "ServedTotals",
]
