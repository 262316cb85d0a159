"""Text the package writes from an exception (span status descriptions), with secrets taken out.

An SDK's exception text often quotes the server's error body, and servers echo what they were
sent: `Error code: 401 - Incorrect API key provided: sk-proj-...`, a URL with `?key=AIza...`.
Telemetry goes to places with wider access than the application's secrets, so anything shaped
like a key, a token or a URL's query string is replaced, and the text is kept short.
"""

from __future__ import annotations

import re

MAX_LENGTH = 256
REDACTED = "[REDACTED]"

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # a URL's query string and user:password part (keys travel there: `?key=AIza...`)
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@\"'<>]+:[^/\s@\"'<>]*@"), rf"\1{REDACTED}@"),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s?#\"'<>]*)\?[^\s#\"'<>]*"), rf"\1?{REDACTED}"),
    # Authorization header values
    (re.compile(r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=-]{8,}"), rf"\1 {REDACTED}"),
    # provider key shapes: OpenAI and Anthropic (sk-, sk-proj-, sk-ant-), Google (AIza), Groq (gsk_),
    # Hugging Face, GitHub, Slack; AWS access key ids
    (re.compile(r"\b(?:sk|gsk|hf|ghp|gho|ghu|ghs|ghr|github_pat|xox[abpr])[-_][A-Za-z0-9_-]{8,}"), REDACTED),
    (re.compile(r"\bAIza[0-9A-Za-z_-]{20,}"), REDACTED),
    (re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b"), REDACTED),
    # a value after a secret-sounding name: `api_key=...`, `"token": "..."`, `X-Api-Key: ...`
    (
        re.compile(
            r"(?i)\b((?:[a-z0-9_-]*(?:api[_-]?key|key|token|secret|password|passwd|signature|credential)s?)"
            r"[\"']?\s*[=:]\s*[\"']?)(?=[^\s\"'&,;}]*[A-Za-z])[^\s\"'&,;}]{6,}"
        ),
        rf"\1{REDACTED}",
    ),
    # what is left of a long secret: 32+ characters mixing letters and digits (an AWS secret key,
    # a Mistral or Cohere key), never plain words or numbers
    (re.compile(r"(?<![A-Za-z0-9/+=_-])(?=[A-Za-z0-9/+=_-]*[0-9])(?=[A-Za-z0-9/+=_-]*[A-Za-z])"
                r"[A-Za-z0-9/+=_-]{32,}(?![A-Za-z0-9/+=_-])"), REDACTED),
)  # fmt: skip


def redact(text: str, limit: int = MAX_LENGTH) -> str:
    """`text` without key-shaped tokens and URL query strings, at most `limit` characters."""
    # Cut first (with room for what redaction may need to see at the edge), so a huge error body
    # costs no more than a short one.
    out = text[: limit * 4]
    for pattern, replacement in _PATTERNS:
        out = pattern.sub(replacement, out)
    if len(out) > limit:
        out = out[: limit - 1] + "…"
    return out
