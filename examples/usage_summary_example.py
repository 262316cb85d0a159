"""The usage summary: one row per requested model, honest averages, audio tokens, calls without
usage, and a summary saved as JSON and loaded back.

Runs the openai SDK against the embedded OpenAI emulator (no API key needed).

    python -m examples.usage_summary_example
"""

from __future__ import annotations

import json

import openai
from opentelemetry.sdk.trace import TracerProvider

import otel_llm_usage
from emulators import OpenAIEmulator, Reply

DATED = "o4-mini-2025-04-16"


def main() -> None:
    otel_llm_usage.instrument(tracer_provider=TracerProvider())
    try:
        with OpenAIEmulator() as emu:
            client = openai.OpenAI(base_url=emu.base_url, api_key="sk-emulated", max_retries=0)
            msgs: list[openai.types.chat.ChatCompletionMessageParam] = [{"role": "user", "content": "Hi"}]
            with otel_llm_usage.session("support-7"), otel_llm_usage.run("writer") as r:
                # o4-mini is answered by its dated version: still one row, named as asked for.
                for prompt, completion in ((1000, 500), (2000, 800)):
                    emu.push(
                        Reply(prompt_tokens=prompt, completion_tokens=completion, model="o4-mini-2025-04-16")
                    )
                    client.chat.completions.create(model="o4-mini", messages=msgs)
                emu.push(Reply(status=429))  # a failed call: an error, not a call without usage
                try:
                    client.chat.completions.create(model="o4-mini", messages=msgs)
                except openai.RateLimitError:
                    pass
                # A stream to a server that sends no usage: counted, and one warning names the host.
                emu.push(Reply(usage_in_stream=False))
                for _ in client.chat.completions.create(model="o4-mini", messages=msgs, stream=True):
                    pass
                # Audio tokens are parts of input and output, kept apart in every total.
                emu.push(Reply(prompt_tokens=300, audio_prompt_tokens=250, audio_completion_tokens=40))
                client.chat.completions.create(model="gpt-4o-audio-preview", messages=msgs)
            u = r.usage
            print(
                f"run writer: requests={u.requests} priced={u.priced_requests} errors={u.errors} "
                f"usage_missing={u.usage_missing_requests} audio_in={u.audio_input_tokens} "
                f"audio_out={u.audio_output_tokens} avg=${u.average_cost_usd:.6f}"
            )
            summary = otel_llm_usage.usage_summary()
            print(summary)
            saved = json.dumps(summary.to_dict())
            loaded = otel_llm_usage.UsageSummary.from_dict(json.loads(saved))
            print(f"\nsaved {len(saved):,} bytes of JSON; loaded back equal: {loaded == summary}")
    finally:
        otel_llm_usage.uninstrument()


if __name__ == "__main__":
    main()
