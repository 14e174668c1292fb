"""The upstream-differences pages name tests that exist, and the two languages list the same differences."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "docs" / "upstream-differences.md", ROOT / "docs" / "upstream-differences.zh.md"]
TEST_REF = re.compile(r"`(tests/[\w/]+\.py)(?:::(\w+))?`|`::(\w+)`")


def references(page: Path) -> list[tuple[str, str | None]]:
    """(test file, test name) pairs; a bare ``::name`` refers to the file named last on the same line."""
    found = []
    for line in page.read_text(encoding="utf-8").splitlines():
        current = None
        for match in TEST_REF.finditer(line):
            if match.group(1):
                current = match.group(1)
                found.append((current, match.group(2)))
            elif current:
                found.append((current, match.group(3)))
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_named_test_exists(page):
    refs = references(page)
    assert refs
    for path, name in refs:
        source = (ROOT / path).read_text(encoding="utf-8")
        assert name is None or re.search(rf"^def {name}\(", source, re.M), f"{page.name}: {path}::{name} does not exist"


def test_both_languages_list_the_same_differences_and_tests():
    rows = [[line for line in p.read_text(encoding="utf-8").splitlines() if re.match(r"\| \d+ \|", line)] for p in PAGES]
    assert len(rows[0]) == len(rows[1]) > 10
    assert references(PAGES[0]) == references(PAGES[1])
