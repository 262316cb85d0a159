"""Loopback HTTP emulators of LLM provider APIs, for tests and demos that need no network."""

from ._server import RecordedRequest
from .openai import OpenAIEmulator, Reply, ServedTotals

__all__ = ["OpenAIEmulator", "RecordedRequest", "Reply", "ServedTotals"]
