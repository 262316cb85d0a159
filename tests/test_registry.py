"""One name per provider and framework (key, module, extra), old spellings as warned aliases, and
the `frameworks=` option apart from `providers=`."""

from __future__ import annotations

import ast
import logging
import re
import tomllib
from pathlib import Path
from typing import Any

import agno.agent
import openai._base_client
import pytest

import otel_llm_usage
from otel_llm_usage import registry
from otel_llm_usage.instrumentor import active_instrumentor

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "otel_llm_usage"


def _extras() -> dict[str, list[str]]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras: dict[str, list[str]] = data["project"]["optional-dependencies"]
    return {re.sub(r"[-_.]+", "-", name): deps for name, deps in extras.items()}


def _patched(module: Any, owner: str, method: str) -> bool:
    return hasattr(getattr(module, owner).__dict__[method], "__wrapped__")


@pytest.mark.parametrize("kind", ["providers", "frameworks"])
def test_one_name_for_key_module_and_extra(kind: str) -> None:
    table = registry.PROVIDERS if kind == "providers" else registry.FRAMEWORKS
    extras = _extras()
    for name, module in table.items():
        assert module == f"otel_llm_usage.{kind}.{name}", (name, module)
        assert (PACKAGE / kind / f"{name}.py").is_file(), name
        assert name.replace("_", "-") in extras, f"no [{name}] extra"  # pip compares - and _ alike


def test_old_extra_names_stay_as_aliases() -> None:
    extras = _extras()
    assert extras["google"] == extras["google-genai"]
    for alias, name in registry.ALIASES.items():
        assert name in registry.PROVIDERS or name in registry.FRAMEWORKS, alias


def test_deprecated_provider_spelling_works_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="otel_llm_usage")
    registry._warned.clear()
    try:
        otel_llm_usage.instrument(providers=["google", "openai"])
        assert _patched(openai._base_client, "SyncAPIClient", "request")
        assert active_instrumentor().options.providers == ("google_genai", "openai")  # type: ignore[union-attr]
        otel_llm_usage.uninstrument()
        otel_llm_usage.instrument(providers=["google", "openai"])
    finally:
        otel_llm_usage.uninstrument()
    warnings = [r.getMessage() for r in caplog.records if "'google'" in r.getMessage()]
    assert warnings == ["otel-llm-usage: providers= names 'google', a deprecated spelling of 'google_genai'"]


def test_frameworks_option_selects_frameworks_only() -> None:
    try:
        otel_llm_usage.instrument(frameworks=["openhands"])
        assert _patched(openai._base_client, "SyncAPIClient", "request")  # every provider still
        assert not _patched(agno.agent, "Agent", "run")
    finally:
        otel_llm_usage.uninstrument()
    try:  # `providers` alone keeps its earlier meaning: the frameworks it names, here none
        otel_llm_usage.instrument(providers=["openai"])
        assert _patched(openai._base_client, "SyncAPIClient", "request")
        assert not _patched(agno.agent, "Agent", "run")
    finally:
        otel_llm_usage.uninstrument()
    try:
        otel_llm_usage.instrument(frameworks=["agno"], providers=["anthropic"])
        assert _patched(agno.agent, "Agent", "run")
        assert not _patched(openai._base_client, "SyncAPIClient", "request")
    finally:
        otel_llm_usage.uninstrument()
    assert not _patched(agno.agent, "Agent", "run")


def test_frameworks_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_LLM_USAGE_FRAMEWORKS", "openai_agents")
    try:
        otel_llm_usage.instrument()
        assert active_instrumentor().options.frameworks == ("openai_agents",)  # type: ignore[union-attr]
        assert not _patched(agno.agent, "Agent", "run")
    finally:
        otel_llm_usage.uninstrument()


def test_a_framework_under_providers_still_works_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="otel_llm_usage")
    registry._warned.clear()
    try:
        otel_llm_usage.instrument(providers=["openai", "agno"])
        options = active_instrumentor().options  # type: ignore[union-attr]
        assert (options.providers, options.frameworks) == (("openai",), ("agno",))
        assert _patched(agno.agent, "Agent", "run")
        assert _patched(openai._base_client, "SyncAPIClient", "request")
    finally:
        otel_llm_usage.uninstrument()
    assert any(
        "framework 'agno'" in r.getMessage() and "frameworks=" in r.getMessage() for r in caplog.records
    )


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"providers": ["openai", "gemini"]}, "providers="),
        ({"frameworks": ["crewai"]}, "frameworks="),
        ({"frameworks": ["openai"]}, "frameworks="),  # a provider is not a framework
    ],
)
def test_unknown_names_raise_naming_the_argument(options: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=re.escape(named)):
        otel_llm_usage.instrument(**options)
    assert active_instrumentor() is None


def _imports(path: Path) -> set[str]:
    """Package modules `path` imports at module level (imports inside functions are deferred)."""
    module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    out: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            target = f"{base}.{node.module}" if node.module else base
            out.add(target)
            out.update(f"{target}.{alias.name}" for alias in node.names)
    return out


def test_no_import_cycles_among_providers_frameworks_and_streams() -> None:
    files = [*PACKAGE.glob("providers/*.py"), *PACKAGE.glob("frameworks/*.py")]
    files += [PACKAGE / "streams.py", PACKAGE / "registry.py", PACKAGE / "_finalise.py"]
    names = {".".join(f.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): f for f in files}
    graph = {name: _imports(path) & set(names) for name, path in names.items()}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph[start]:
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    cycles = [name for name in graph if reaches(name, name, {name})]
    assert not cycles, cycles
    assert "otel_llm_usage.providers.groq" not in {m for m in graph["otel_llm_usage.providers.openai"]}, (
        "openai imports groq"
    )
