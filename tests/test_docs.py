"""The documentation holds together: the README stays short, and every relative link in the README,
docs/ and benchmarks/README.md leads to a file that exists and, for `#anchor` links, to a heading
that exists there (anchors as the repository host derives them from headings).

The package index shows docs/package-description.md (pyproject's `readme`), where relative links
would break: it must have none.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
README_MAX_BYTES = 15_000
PACKAGE_DESCRIPTION = ROOT / "docs" / "package-description.md"

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$", re.M)
_EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)


def documents() -> list[Path]:
    docs = [README, ROOT / "benchmarks" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    docs += [p for p in (ROOT / "ARCHITECTURE.md", ROOT / "CONTRIBUTING.md") if p.exists()]
    return docs


def prose(markdown: str) -> str:
    """The text outside fenced code blocks and inline code, where links are links."""
    return _INLINE_CODE.sub("", _FENCE.sub("", markdown))


def links(markdown: str) -> list[str]:
    return _LINK.findall(prose(markdown))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation removed, spaces to -."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = text.replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for _level, heading in _HEADING.findall(_FENCE.sub("", markdown)):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def broken_links(doc: Path, text: str | None = None) -> list[str]:
    """What is wrong with the links of `doc` (its text, unless given, is read from the file)."""
    problems = []
    for target in links(doc.read_text() if text is None else text):
        if _EXTERNAL.match(target):
            continue
        path_part, _, anchor = target.partition("#")
        dest = (doc.parent / path_part).resolve() if path_part else doc
        where = f"{doc.relative_to(ROOT)}: {target}"
        if not dest.exists():
            problems.append(f"{where}: {path_part} does not exist")
            continue
        if not dest.resolve().is_relative_to(ROOT):
            problems.append(f"{where}: leads outside the repository")
            continue
        if anchor:
            if dest.suffix != ".md":
                problems.append(f"{where}: anchor into a file that is not Markdown")
            elif anchor not in anchors(dest.read_text()):
                problems.append(f"{where}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    return problems


def test_slug_and_link_reader() -> None:
    assert slug("Calls no library made: `record_call()`") == "calls-no-library-made-record_call"
    assert slug("Anthropic's own spans") == "anthropics-own-spans"
    assert slug("Overhead: the measured figures") == "overhead-the-measured-figures"
    assert anchors("# A\n## A\n```\n# not a heading\n```\n") == {"a", "a-1"}
    text = "[a](x.md) ![b](img.png) `[c](code.md)` [d](https://e.org) [e](y.md#z)\n```\n[f](g.md)\n```"
    assert links(text) == ["x.md", "img.png", "https://e.org", "y.md#z"]


@pytest.mark.parametrize("doc", documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_lead_somewhere(doc: Path) -> None:
    assert not broken_links(doc)


def test_broken_links_are_reported() -> None:
    """The check above must be able to fail: a missing file and a missing anchor are both found."""
    probe = "[gone](missing.md) [bad anchor](../README.md#no-such-heading) [ok](../README.md#install)\n"
    problems = broken_links(ROOT / "docs" / "probe.md", probe)
    assert len(problems) == 2, problems
    assert "missing.md does not exist" in problems[0]
    assert "no heading #no-such-heading" in problems[1]


def test_readme_is_short_and_keeps_the_contributor_commands() -> None:
    text = README.read_text()
    assert len(text.encode()) <= README_MAX_BYTES, f"README.md is {len(text.encode())} bytes"
    assert "make demo" in text and "make test" in text
    for page in ("docs/providers.md", "docs/runs-sessions-budgets.md", "docs/metrics-and-alerts.md"):
        assert f"]({page}" in text, f"README does not link {page}"


def test_package_description_has_no_relative_links() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert (ROOT / pyproject["project"]["readme"]).resolve() == PACKAGE_DESCRIPTION
    text = PACKAGE_DESCRIPTION.read_text()
    found = links(text)
    relative = [t for t in found if not _EXTERNAL.match(t)]
    assert not relative, f"relative links break on the package index: {relative}"
    assert "pip install" in text and "instrument(" in text
