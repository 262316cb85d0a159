"""Packaging: the license, PEP 639 metadata, a wheel built without warnings about our metadata, and
the constraints file of lower bounds that `make test-min-versions` installs."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from scripts import min_constraints

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_license_is_the_apache_2_text_and_declared_as_pep_639() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License")
    assert "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text
    project = PYPROJECT["project"]
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    assert not any(c.startswith("License ::") for c in project["classifiers"]), "PEP 639 forbids both"
    requires = PYPROJECT["build-system"]["requires"]
    (setuptools,) = [r for r in requires if r.startswith("setuptools")]
    bound = re.search(r">=\s*(\d+)", setuptools)
    assert bound and int(bound.group(1)) >= 77, "license expressions need setuptools 77"


def test_classifiers_match_requires_python() -> None:
    project = PYPROJECT["project"]
    floor = re.fullmatch(r">=\s*3\.(\d+)", project["requires-python"])
    assert floor
    versions = [
        int(m.group(1))
        for c in project["classifiers"]
        if (m := re.fullmatch(r"Programming Language :: Python :: 3\.(\d+)", c))
    ]
    assert versions and min(versions) == int(floor.group(1))
    assert "Typing :: Typed" in project["classifiers"]


def test_constraints_pin_every_lower_bound() -> None:
    lines = min_constraints.constraints(PYPROJECT, ["test", "openai", "anthropic"])
    pins = dict(line.split("==") for line in lines)
    assert pins["opentelemetry-sdk"] == re.search(
        r"opentelemetry-sdk>=([\w.]+)", " ".join(PYPROJECT["project"]["dependencies"])
    ).group(1)  # type: ignore[union-attr]
    for requirement in (
        PYPROJECT["project"]["dependencies"]
        + PYPROJECT["project"]["optional-dependencies"]["test"]
        + PYPROJECT["project"]["optional-dependencies"]["openai"]
    ):
        name = min_constraints.canonical(re.split(r"[<>=!~\[;\s]", requirement, maxsplit=1)[0])
        if ">=" in requirement:
            assert name in pins, f"{requirement} has no pin"
    with pytest.raises(ValueError, match="unknown extras"):
        min_constraints.constraints(PYPROJECT, ["no-such-extra"])


def test_lower_bounds_pick_the_highest_and_read_names() -> None:
    bounds = min_constraints.lower_bounds(["PyYAML>=5", "pyyaml>=6.0.1", "a_b[x]>=0.51b0,<1", "c", "d<2"])
    assert bounds == {"pyyaml": "6.0.1", "a-b": "0.51b0"}
    assert min_constraints.release_key("0.64b0") > min_constraints.release_key("0.51b0")


def test_wheel_builds_without_metadata_warnings(tmp_path: Path) -> None:
    """The build frontend fetches setuptools from the package index into an isolated environment."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    output = done.stdout + done.stderr
    for warning in (
        "SetuptoolsDeprecationWarning",
        "License classifiers are deprecated",
        "`project.license`",
    ):
        assert warning not in output, f"build warns: {warning}"
    (wheel,) = tmp_path.glob("otel_llm_usage-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        (meta_name,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = Parser().parsestr(zf.read(meta_name).decode())
        assert any(n.endswith(".dist-info/licenses/LICENSE") for n in zf.namelist())
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata["License-File"] == "LICENSE"
    description = metadata.get_payload()
    assert description.strip() == (ROOT / "docs" / "package-description.md").read_text().strip()
