"""The client library releases each integration supports, checked when it is about to be patched.

Why `instrumentation_dependencies()` returns nothing: BaseInstrumentor treats every listed package
as required, and the `instruments-any` extra that opentelemetry-instrumentation's loader honours
(one of them suffices) still refuses the whole package when no listed client is installed at a
supported release. This package is useful with none of them (`record_call()`, `run()`/`session()`
rollups, budgets) and with any subset, and a client outside its range must cost only that client.
So the check is per library, here: a release older than the floor is skipped with one warning,
the others are patched. A newer release is patched: a renamed method is skipped on its own.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from ._envparse import warn_once

# import name -> (distribution, supported releases). Floors follow pyproject's extras.
SUPPORTED: dict[str, tuple[str, str]] = {
    "openai": ("openai", ">=2.0"),
    "anthropic": ("anthropic", ">=2.0"),
    "botocore": ("botocore", ">=1.34.116"),
    "litellm": ("litellm", ">=1.103"),
    "google.genai": ("google-genai", ">=1.40"),
    "groq": ("groq", ">=0.9"),
    "cohere": ("cohere", ">=5.16"),
    "mistralai": ("mistralai", ">=1.9.3"),
    "mistralai.client": ("mistralai", ">=1.9.3"),
    "agents": ("openai-agents", ">=0.24"),
    "agno": ("agno", ">=3.1"),
}


def supported(library: str) -> bool:
    """False (after one warning) when the installed release of `library` is outside its range."""
    entry = SUPPORTED.get(library)
    if entry is None:
        return True
    dist, spec = entry
    try:
        installed = version(dist)
        ok = Version(installed) in SpecifierSet(spec)
    except (PackageNotFoundError, InvalidVersion, InvalidSpecifier):
        return True  # not findable by its distribution name (vendored, renamed): try it anyway
    if not ok:
        warn_once(
            "supported",
            library,
            f"{dist} {installed} is older than this package supports ({dist}{spec}); its calls are not "
            f'recorded. Upgrade it: pip install "{dist}{spec}"',
        )
    return ok
