"""The groq SDK (0.9 and later): `chat.completions.create` on `Groq` and `AsyncGroq`, plain and streamed.

The groq SDK is generated from the same Stainless template as openai's: every call goes through
`SyncAPIClient.request` / `AsyncAPIClient.request` of `groq._base_client`, including
`with_raw_response` and `with_streaming_response`. So the openai module's hooks serve it, with
groq's package, its path (`/openai/v1/chat/completions`) and `gen_ai.provider.name = "groq"`.
Its other endpoints (audio, embeddings, batches, files, models) go through untouched.

Usage has OpenAI's shape (plus timings, which are ignored). A non-streamed completion carries it
in `usage`; a stream carries it in its final chunk's `x_groq.usage`, whether or not the caller
asked for `stream_options.include_usage` (the openai module reads it, for this provider name,
whichever SDK calls Groq). So the request is never changed (`stream_usage` does not apply), and
the caller sees the same chunks with and without instrumentation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from .. import semconv as sc
from ..config import Options
from ..recorder import Recorder
from .openai import OpenAIHooks

LIBRARY = "groq"
TARGETS = (
    ("groq._base_client", "SyncAPIClient.request"),
    ("groq._base_client", "AsyncAPIClient.request"),
)


class GroqHooks(OpenAIHooks):
    site = "groq"
    library = LIBRARY
    operations: Mapping[str, str] = MappingProxyType({"/openai/v1/chat/completions": sc.OP_CHAT})
    provider = "groq"
    adds_stream_usage = False  # x_groq.usage always comes; stream_options would change the chunks


def build_wrappers(recorder: Recorder, options: Options) -> dict[tuple[str, str], Callable[..., Any]]:
    hooks = GroqHooks(recorder, options.stream_usage, options.endpoints)
    return {TARGETS[0]: hooks.sync_call, TARGETS[1]: hooks.async_call}
