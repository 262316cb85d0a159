"""The groq SDK (0.9 and later): `chat.completions.create` on `Groq` and `AsyncGroq`, plain and streamed.

The groq SDK is generated from the same Stainless template as openai's: every call goes through
`SyncAPIClient.request` / `AsyncAPIClient.request` of `groq._base_client`, including
`with_raw_response` and `with_streaming_response`. So the openai module's hooks serve it, with
groq's package, its path (`/openai/v1/chat/completions`) and `gen_ai.provider.name = "groq"`.
Its other endpoints (audio, embeddings, batches, files, models) go through untouched.

Usage has OpenAI's shape (plus timings, which are ignored). A non-streamed completion carries it
in `usage`; a stream carries it in its final chunk's `x_groq.usage`, whether or not the caller
asked for `stream_options.include_usage`. So the request is never changed (`stream_usage` does
not apply), and the caller sees the same chunks with and without instrumentation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import semconv as sc
from ..config import Options
from ..recorder import Recorder
from . import openai as openai_provider
from ._fields import get

LIBRARY = "groq"
PROVIDER = "groq"
TARGETS = (
    ("groq._base_client", "SyncAPIClient.request"),
    ("groq._base_client", "AsyncAPIClient.request"),
)
OPERATIONS = {"/openai/v1/chat/completions": sc.OP_CHAT}


# --- pure extraction -------------------------------------------------------------------------

# Groq's usage has OpenAI's shape: `prompt_tokens` includes `prompt_tokens_details.cached_tokens`,
# `completion_tokens` includes `completion_tokens_details.reasoning_tokens`.
usage_from = openai_provider.usage_from
result_from = openai_provider.result_from


def stream_usage_of(chunk: Any) -> Any:
    """The usage a stream chunk carries: `usage` if the caller asked for it, else `x_groq.usage`.

    With `stream_options.include_usage` Groq sends both in the final chunk, with the same counts:
    only one is read.
    """
    usage = get(chunk, "usage")
    return usage if usage is not None else get(get(chunk, "x_groq"), "usage")


class ChunkAccumulator(openai_provider.ChunkAccumulator):
    """openai's chat chunk accumulator, also reading the usage Groq puts under `x_groq`."""

    __slots__ = ()

    def add(self, chunk: Any) -> bool:
        hidden = super().add(chunk)
        if self.usage is None:
            usage = stream_usage_of(chunk)
            if usage is not None:
                self.usage = usage
                self.complete = True
        return hidden


# --- hooks -----------------------------------------------------------------------------------


class GroqHooks(openai_provider.OpenAIHooks):
    site = "groq"
    library = LIBRARY
    operations = OPERATIONS
    provider = PROVIDER
    chunk_accumulator = ChunkAccumulator
    adds_stream_usage = False  # x_groq.usage always comes; stream_options would change the chunks


def build_wrappers(recorder: Recorder, options: Options) -> dict[tuple[str, str], Callable[..., Any]]:
    openai_provider._endpoints.clear()  # the `endpoints` option may have changed
    hooks = GroqHooks(recorder, options.stream_usage, options.endpoints)
    return {TARGETS[0]: hooks.sync_call, TARGETS[1]: hooks.async_call}
