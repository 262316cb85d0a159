"""The built wheel carries the runtime package only: no emulators, tests, examples or benchmarks."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "otel_llm_usage"
# The build writes build/ and *.egg-info next to pyproject.toml: it runs on a copy of the checkout.
# pip builds in an isolated environment with pyproject's [build-system] requirements, as a release
# would (the test virtualenv's own setuptools may be older than those requirements, or lack wheel).
SKIPPED = shutil.ignore_patterns(".*", "__pycache__", "*.egg-info", "build", "dist")


def build_wheel(tmp_path: Path) -> zipfile.ZipFile:
    source, out = tmp_path / "source", tmp_path / "dist"
    shutil.copytree(ROOT, source, ignore=SKIPPED)
    out.mkdir()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    done = subprocess.run(
        [*pip, "wheel", "--no-deps", "--wheel-dir", str(out), str(source)],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    (wheel,) = out.glob("*.whl")
    return zipfile.ZipFile(wheel)


def test_the_wheel_holds_the_package_and_nothing_else(tmp_path: Path) -> None:
    with build_wheel(tmp_path) as wheel:
        names = wheel.namelist()
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        entry_points_text = wheel.read(entry_points).decode()
    top_level = {name.split("/", 1)[0] for name in names}
    dist_info = {top for top in top_level if top.endswith(".dist-info")}
    assert top_level - dist_info == {PACKAGE}, sorted(top_level)
    assert len(dist_info) == 1

    modules = {str(p.relative_to(ROOT).as_posix()) for p in (ROOT / PACKAGE).rglob("*.py")}
    assert modules <= set(names), sorted(modules - set(names))
    assert f"{PACKAGE}/py.typed" in names
    assert any(m.count("/") > 1 for m in modules)  # subpackages are in the comparison too

    for excluded in ("emulators", "tests", "examples", "benchmarks", "scripts"):
        assert not any(name.startswith(f"{excluded}/") for name in names), excluded
    assert not any("emulator" in name for name in names), [n for n in names if "emulator" in n]
    # opentelemetry-instrument finds the instrumentor through this entry point.
    assert "[opentelemetry_instrumentor]" in entry_points_text
