"""The documentation: a short README whose links resolve, and every page of docs/ in the site's nav."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def _local_links(path: Path) -> list[str]:
    return [link for link in LINK.findall(path.read_text(encoding="utf-8")) if "://" not in link]


def test_the_readme_is_at_most_250_lines_and_its_links_resolve():
    readme = ROOT / "README.md"
    assert len(readme.read_text(encoding="utf-8").splitlines()) <= 250
    missing = [link for link in _local_links(readme) if not (ROOT / link).exists()]
    assert not missing, f"README links to missing files: {missing}"


def test_every_docs_page_is_in_the_nav_and_every_nav_entry_exists():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    nav = {page for entry in config["nav"] for page in entry.values()}
    pages = {path.name for path in (ROOT / "docs").glob("*.md")}
    assert nav == pages


def test_contributing_links_resolve():
    contributing = ROOT / "CONTRIBUTING.md"
    missing = [link for link in _local_links(contributing) if not (ROOT / link).exists()]
    assert not missing, f"CONTRIBUTING links to missing files: {missing}"
