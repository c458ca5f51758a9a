"""Links between the repository's Markdown files point at headings that exist (cards are rewritten often)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOT_OURS = {"runs", "build", "venv", "site-packages", "node_modules"}  # run outputs and installed packages
DOCS = sorted(p for p in ROOT.rglob("*.md")
              if not any(part.startswith(".") or part in NOT_OURS for part in p.relative_to(ROOT).parts))
LINK = re.compile(r"\]\(([^)\s#]*\.md)?#([^)\s]+)\)")


def github_anchor(heading: str) -> str:
    """GitHub's heading id: lower case, punctuation dropped, each space a hyphen."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    return {github_anchor(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*$", text, flags=re.M)}


def test_github_anchor_follows_githubs_rule() -> None:
    assert github_anchor("Trust: statuses, calibration, \"not a cassava leaf\"") == \
        "trust-statuses-calibration-not-a-cassava-leaf"
    assert github_anchor("Model v3 (issue 17): one — two") == "model-v3-issue-17-one--two"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_anchor_link_names_a_heading(doc: Path) -> None:
    broken = []
    for target, anchor in LINK.findall(doc.read_text(encoding="utf-8")):
        page = (doc.parent / target).resolve() if target else doc
        if page.exists() and anchor not in anchors(page):
            broken.append(f"{target or doc.name}#{anchor}")
    assert not broken, f"{doc.relative_to(ROOT)} links to headings that do not exist: {broken}"
