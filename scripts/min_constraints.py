"""Prints a pip constraints file pinning every dependency to the lower bound pyproject.toml declares.

    python scripts/min_constraints.py --extras test,openai,anthropic > constraints.txt
    pip install -c constraints.txt -e ".[test,openai,anthropic]"

Installing under these pins proves the declared lower bounds can be installed together (and,
with the tests run afterwards, that they work). A dependency without a `>=` bound is left
unpinned; one named by several requirements takes the highest of their bounds.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# name, optional [extras], then the specifiers up to an environment marker.
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*([^;]*)")
_LOWER_BOUND = re.compile(r">=\s*([^\s,]+)")


def canonical(name: str) -> str:
    """PEP 503 normalised name, so `PyYAML` and `pyyaml` are one dependency."""
    return re.sub(r"[-_.]+", "-", name).lower()


def release_key(version: str) -> tuple[int, ...]:
    """Orders the plain releases pyproject names (1.30, 0.51b0): pre-release tags sort first."""
    parts = re.findall(r"\d+|[a-z]+", version.lower())
    return tuple(int(p) if p.isdigit() else -1 for p in parts)


def lower_bounds(requirements: Iterable[str]) -> dict[str, str]:
    bounds: dict[str, str] = {}
    for requirement in requirements:
        match = _REQUIREMENT.match(requirement)
        if not match:
            raise ValueError(f"cannot read requirement {requirement!r}")
        name, specifiers = canonical(match.group(1)), match.group(2)
        found = _LOWER_BOUND.search(specifiers)
        if found is None:
            continue
        version = found.group(1)
        if name not in bounds or release_key(version) > release_key(bounds[name]):
            bounds[name] = version
    return bounds


def constraints(pyproject: dict[str, object], extras: Sequence[str]) -> list[str]:
    project = pyproject["project"]
    assert isinstance(project, dict)
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    unknown = [e for e in extras if e not in optional]
    if unknown:
        raise ValueError(f"unknown extras {unknown}; pyproject.toml has {sorted(optional)}")
    requirements = list(project.get("dependencies", []))
    for extra in extras:
        requirements += optional[extra]
    return [f"{name}=={version}" for name, version in sorted(lower_bounds(requirements).items())]


def main(argv: Sequence[str] | None = None) -> int:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--extras", default="", help="comma-separated extras to include")
    parser.add_argument("--pyproject", type=Path, default=ROOT / "pyproject.toml")
    args = parser.parse_args(argv)
    extras = [e.strip() for e in args.extras.split(",") if e.strip()]
    pyproject = tomllib.loads(args.pyproject.read_text())
    sys.stdout.write("".join(line + "\n" for line in constraints(pyproject, extras)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
