"""The per-call token ledger: one normalised record of disjoint buckets, and reading counts safely.

`TokenUsage.input` and `.output` are inclusive totals, as in the semantic conventions: cache
reads and writes are part of `input`, reasoning is part of `output`. Every provider module turns
its own usage fields into this shape, so nothing downstream needs to know which provider said what.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from ._guard import warn_once

# The largest token count read as real, for one bucket of one call: far above any context window
# (millions of tokens), far below where sums go wrong. Above it a count can only be corrupt; summed
# into a cumulative counter it would pass 2**63 - 1, which OTLP cannot encode, and every later
# metric export of the process would fail. Such a count is read as absent, like any unreadable one.
MAX_TOKEN_COUNT = 2**32


def as_count(value: object) -> int:
    """A token count from whatever a provider sent: a non-negative int up to `MAX_TOKEN_COUNT`,
    anything else is 0.

    Providers (and proxies in front of them) sometimes send floats, strings, nulls or absurd
    numbers; a count that cannot be read is treated as absent rather than guessed.
    """
    if type(value) is int:
        if value > MAX_TOKEN_COUNT:
            return _out_of_range(value)
        return value if value > 0 else 0
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return as_count(int(value))
    if isinstance(value, float) and math.isfinite(value) and value > 0 and value.is_integer():
        return as_count(int(value))
    return 0


def _out_of_range(value: int) -> int:
    warn_once(
        "usage.count_out_of_range",
        "otel-llm-usage: a token count of about 2**%d from an LLM response is above %d and is read "
        "as absent (further counts out of range are not logged)",
        value.bit_length() - 1,
        MAX_TOKEN_COUNT,
    )
    return 0


def _bounded(count: int) -> int:
    if count > MAX_TOKEN_COUNT:
        return _out_of_range(count)
    return count if count > 0 else 0


class TokenUsage(NamedTuple):
    """Disjoint token buckets of one call. Invariants (checked by `valid`):

    cache_read + cache_write <= input; cache_write_1h <= cache_write; input_audio <= input;
    reasoning <= output; output_audio <= output; nothing negative.

    Immutable; a named tuple because one is built for every call, and that costs a third of a
    frozen dataclass.
    """

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    cache_write_1h: int = 0
    reasoning: int = 0
    input_audio: int = 0
    output_audio: int = 0

    @classmethod
    def normalised(
        cls,
        *,
        input: int = 0,
        output: int = 0,
        cache_read: int = 0,
        cache_write: int = 0,
        cache_write_1h: int = 0,
        reasoning: int = 0,
        input_audio: int = 0,
        output_audio: int = 0,
    ) -> TokenUsage:
        """Build a ledger that satisfies the invariants even from inconsistent provider data.

        A subset larger than its total can only come from a malformed payload; the subset is cut
        to fit rather than inflating the billed total. A count above `MAX_TOKEN_COUNT` (a sum of
        fields each in range can pass it) is read as absent.
        """
        if (
            input <= MAX_TOKEN_COUNT
            and output <= MAX_TOKEN_COUNT
            and cache_read >= 0
            and cache_write >= 0
            and cache_read + cache_write <= input
            and 0 <= cache_write_1h <= cache_write
            and 0 <= reasoning <= output
            and 0 <= input_audio <= input
            and 0 <= output_audio <= output
        ):  # consistent already: the common case
            return cls(
                input, output, cache_read, cache_write, cache_write_1h, reasoning, input_audio, output_audio
            )
        input, output = _bounded(input), _bounded(output)
        cache_read, cache_write = _bounded(cache_read), _bounded(cache_write)
        cache_write_1h, reasoning = _bounded(cache_write_1h), _bounded(reasoning)
        input_audio, output_audio = _bounded(input_audio), _bounded(output_audio)
        cache_read = min(cache_read, input)
        cache_write = min(cache_write, input - cache_read)
        return cls(
            input=input,
            output=output,
            cache_read=cache_read,
            cache_write=cache_write,
            cache_write_1h=min(cache_write_1h, cache_write),
            reasoning=min(reasoning, output),
            input_audio=min(input_audio, input),
            output_audio=min(output_audio, output),
        )

    @property
    def total(self) -> int:
        return self.input + self.output

    @property
    def uncached_input(self) -> int:
        return self.input - self.cache_read - self.cache_write

    def valid(self) -> bool:
        return (
            min(self) >= 0
            and self.cache_read + self.cache_write <= self.input
            and self.cache_write_1h <= self.cache_write
            and self.input_audio <= self.input
            and self.reasoning <= self.output
            and self.output_audio <= self.output
        )
