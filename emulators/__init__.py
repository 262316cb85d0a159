"""Loopback HTTP emulators of LLM provider APIs, for tests and demos that need no network.

Not part of the installed package: tests, examples and benchmarks import them from the repository.
``python -m emulators --port 8089`` serves them on their own (see docs/emulators.md).
"""

from ._server import RecordedRequest
from .anthropic import AnthropicEmulator, AnthropicReply, AnthropicServedTotals
from .bedrock import BedrockEmulator, BedrockReply, BedrockServedTotals
from .cohere import CohereEmulator, CohereReply, CohereServedTotals
from .gemini import GeminiEmulator, GeminiReply, GeminiServedTotals
from .groq import GroqEmulator, GroqReply, GroqServedTotals
from .mistral import MistralEmulator, MistralReply, MistralServedTotals
from .openai import OpenAIEmulator, Reply, ServedTotals

__all__ = [
    "AnthropicEmulator",
    "AnthropicReply",
    "AnthropicServedTotals",
    "BedrockEmulator",
    "BedrockReply",
    "BedrockServedTotals",
    "CohereEmulator",
    "CohereReply",
    "CohereServedTotals",
    "GeminiEmulator",
    "GeminiReply",
    "GeminiServedTotals",
    "GroqEmulator",
    "GroqReply",
    "GroqServedTotals",
    "MistralEmulator",
    "MistralReply",
    "MistralServedTotals",
    "OpenAIEmulator",
    "RecordedRequest",
    "Reply",
    "ServedTotals",
]
