"""Importing the package and calling instrument() import no client library; a later import is patched."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import sys
    import otel_llm_usage
    libraries = ("openai", "anthropic", "litellm", "google.genai")
    assert not [m for m in libraries if m in sys.modules], "import otel_llm_usage imported a client"
    otel_llm_usage.instrument()
    assert not [m for m in libraries if m in sys.modules], "instrument() imported a client"

    import openai
    from openai._base_client import SyncAPIClient
    assert hasattr(SyncAPIClient.__dict__["request"], "__wrapped__"), "openai not patched on import"
    otel_llm_usage.uninstrument()
    assert not hasattr(SyncAPIClient.__dict__["request"], "__wrapped__"), "not restored"

    otel_llm_usage.instrument(providers=["anthropic"])
    import anthropic
    from anthropic._base_client import SyncAPIClient as AnthropicClient
    assert hasattr(AnthropicClient.__dict__["request"], "__wrapped__")
    assert not hasattr(SyncAPIClient.__dict__["request"], "__wrapped__"), "providers= not respected"
    print("ok")
    """
)


def test_no_client_imported_until_the_application_imports_it() -> None:
    root = str(Path(__file__).resolve().parents[1])
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, cwd=root, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
