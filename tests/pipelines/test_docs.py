"""The documentation a user clones: README.md and docs/ link only inside the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _links(path: Path) -> list[str]:
    return LINK.findall(path.read_text(encoding="utf-8"))


def test_the_contract_is_in_the_repository_and_the_readme_points_at_it():
    contract = ROOT / "docs" / "contract.md"
    assert "docs/contract.md" in _links(ROOT / "README.md")
    text = contract.read_text(encoding="utf-8")
    for table in ("customers", "transactions", "usage_events", "engagement_events"):
        assert f"| {table} |" in text
    for output in ("assignments.csv", "personas.json", "features.parquet", "report.html"):
        assert f"| `{output}` |" in text
    assert "segmentation.json" in text and "postgresql://" in text and "--publish URL" in text


@pytest.mark.parametrize("doc", DOCS, ids=[str(d.relative_to(ROOT)) for d in DOCS])
def test_links_stay_inside_the_repository(doc):
    for link in _links(doc):
        target = link.split("#")[0]
        if not target:
            continue  # an anchor in the same page
        assert "://" not in target and not target.startswith("mailto:"), (doc.name, link)
        resolved = (doc.parent / target).resolve()
        assert resolved.is_relative_to(ROOT), (doc.name, link)
        assert resolved.exists(), (doc.name, link)
