"""The course assignments hold together: masters pass their graders, student versions fail them cleanly.

`python -m tools.release release` turns each master notebook (notebooks/{en,zh}/assignments/AN_slug)
into a student version. Here we release into a temporary folder and prove that
- every student version keeps no line of any solution and no hidden test, and replaces each solution with the stub;
- one pytest run of the graders (tests/assignments) passes on every master and, on every student version, fails
  every test with "not implemented yet" and with no other kind of error.
The zh masters are not graded a second time: their code cells are the en ones (checked below), so they define the
same functions and classes.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tools import release as assignments, suite

REPO = Path(__file__).resolve().parent.parent
GRADERS = REPO / "tests" / "assignments"
OTHER_ERRORS = re.compile(
    r"\b(NameError|TypeError|AttributeError|KeyError|IndexError|ImportError|ModuleNotFoundError|SyntaxError|"
    r"UnboundLocalError|ZeroDivisionError|RecursionError)\b"
)


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("release")
    assignments.release(out)
    return out


def _masters() -> list[Path]:
    return assignments.masters("en")


def test_there_are_five_assignments_in_both_languages_each_with_a_grader():
    en = [path.stem for path in assignments.masters("en")]
    zh = [path.stem for path in assignments.masters("zh")]
    assert len(en) >= 5, f"expected at least five master notebooks, found {en}"
    assert zh == en, f"every assignment needs a zh twin: en {en}, zh {zh}"
    for stem in en:
        number = stem.split("_")[0].lower()
        assert list(GRADERS.glob(f"test_{number}_*.py")), f"{stem} has no grader tests/assignments/test_{number}_*.py"


@pytest.mark.parametrize("master", _masters(), ids=lambda path: path.stem)
def test_master_has_solutions_hidden_tests_and_identical_zh_code(master):
    nb = suite.read(master)
    found = {"solution": 0, "hidden": 0}
    for cell in nb.cells:
        parts = assignments.regions(cell.source)
        found["solution"] += bool(parts["solution"])
        found["hidden"] += bool(parts["hidden"])
    assert found["solution"] and found["hidden"], f"{master.name}: {found}; each master needs both kinds of region"
    zh = suite.read(master.parents[2] / "zh" / "assignments" / master.name)
    assert suite.code_sources(zh) == suite.code_sources(nb), f"{master.stem}: zh code cells differ from en (run sync)"


def test_release_writes_clean_pairs_for_both_languages(released):
    for lang in suite.LANGS:
        for master in assignments.masters(lang):
            ipynb, py = released / lang / f"{master.stem}.ipynb", released / lang / f"{master.stem}.py"
            assert ipynb.is_file() and py.is_file(), f"{lang}/{master.stem}: release wrote no .ipynb/.py pair"
            nb = suite.read(ipynb)
            assert ipynb.read_text(encoding="utf-8") == suite.ipynb_text(nb), f"{ipynb.name}: not a clean notebook"
            assert py.read_text(encoding="utf-8") == suite.py_text(nb), f"{lang}/{py.name}: .py and .ipynb differ"


@pytest.mark.parametrize("lang", suite.LANGS)
def test_student_versions_hold_no_solution_and_no_hidden_test(released, lang):
    markers = (assignments.BEGIN_SOLUTION, assignments.END_SOLUTION, assignments.BEGIN_HIDDEN, assignments.END_HIDDEN)
    for master in assignments.masters(lang):
        nb = suite.read(master)
        secret, public, code_regions, text_regions = set(), set(), 0, 0
        for cell in nb.cells:
            parts = assignments.regions(cell.source)
            secret |= {line.strip() for line in parts["solution"] + parts["hidden"] if line.strip()}
            public |= {line.strip() for line in assignments.student_source(cell.source, cell.cell_type).split("\n")}
            count = cell.source.count(assignments.BEGIN_SOLUTION)
            code_regions += count if cell.cell_type == "code" else 0
            text_regions += count if cell.cell_type == "markdown" else 0
        # A line that also appears outside every region (a blank line, a bare `return`) is not a secret.
        secret -= public
        assert secret, f"{master.stem}: no solution line is distinctive enough to check"
        for suffix in (".py", ".ipynb"):
            student = released / lang / f"{master.stem}{suffix}"
            lines = {line.strip() for cell in suite.read(student).cells for line in cell.source.split("\n")}
            leaked = sorted(secret & lines)
            assert not leaked, f"{lang}/{student.name} still contains solution or hidden-test lines: {leaked[:5]}"
            text = student.read_text(encoding="utf-8")
            assert not any(marker in text for marker in markers), f"{lang}/{student.name} still contains a delimiter"
            assert text.count(assignments.NOT_IMPLEMENTED) == code_regions, f"{lang}/{student.name}: one stub per solution"
            assert text.count(assignments.TEXT_STUB) == text_regions, f"{lang}/{student.name}: one answer stub per written answer"


def test_unbalanced_markers_are_refused():
    with pytest.raises(assignments.MarkerError, match="never closed"):
        assignments.student_source("x = 1\n### BEGIN SOLUTION\ny = 2", "code")
    with pytest.raises(assignments.MarkerError, match="do not nest"):
        assignments.student_source("### BEGIN SOLUTION\n### BEGIN HIDDEN TESTS\n### END HIDDEN TESTS", "code")
    with pytest.raises(assignments.MarkerError, match="stand alone"):
        assignments.student_source("x = 1  ### BEGIN SOLUTION", "code")


def test_stub_keeps_the_indentation_of_its_region():
    source = "def f(x):\n    '''Doc.'''\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION\n"
    assert assignments.student_source(source, "code") == (
        "def f(x):\n    '''Doc.'''\n    # YOUR CODE HERE\n    raise NotImplementedError(\"not implemented yet\")\n"
    )


def _grade(released: Path, report: Path) -> tuple[dict, str]:
    """One pytest run of every grader on the en masters and on both languages' student versions."""
    folders = {
        "master": REPO / "notebooks" / "en" / "assignments",
        "student-en": released / "en",
        "student-zh": released / "zh",
    }
    command = [sys.executable, "-m", "pytest", str(GRADERS), "-p", "no:cacheprovider", "-q", f"--junitxml={report}"]
    for folder in folders.values():
        command += ["--notebook-dir", str(folder)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert report.is_file(), f"the graders did not run:\n{output[-3000:]}"
    cases: dict[str, list] = {kind: [] for kind in folders}
    for case in ET.parse(report).getroot().iter("testcase"):
        name = case.get("name")
        kind = next((k for k, folder in folders.items() if f"[{folder}" in name), None)
        assert kind is not None, f"cannot tell which notebook {name} graded"
        cases[kind].append(case)
    return cases, output


def test_masters_pass_their_graders_and_student_versions_fail_them_cleanly(released, tmp_path):
    # One test, so that one grading run serves every check even when pytest-xdist spreads tests over workers.
    cases, output = _grade(released, tmp_path / "junit.xml")

    masters = cases["master"]
    assert len(masters) >= 40, f"only {len(masters)} grader tests ran on the masters:\n{output[-3000:]}"
    bad = [f"{c.get('classname')}::{c.get('name')}: {problem.get('message')}"
           for c in masters for problem in (c.find("failure"), c.find("error")) if problem is not None]
    assert not bad, "masters fail their graders:\n" + "\n".join(bad)
    skipped = [c.get("name") for c in masters if c.find("skipped") is not None]
    assert all("real_two_process_run" in name for name in skipped), f"masters skipped {skipped}"

    for kind in ("student-en", "student-zh"):
        ran = [c for c in cases[kind] if c.find("skipped") is None]
        assert len(ran) >= 40, f"only {len(ran)} grader tests ran on {kind}:\n{output[-3000:]}"
        for case in ran:
            where = f"{kind}: {case.get('classname')}::{case.get('name')}"
            assert case.find("error") is None, f"{where} errored instead of failing: {case.find('error').get('message')}"
            failure = case.find("failure")
            assert failure is not None, f"{where} passed on a student version"
            text = (failure.get("message") or "") + "\n" + (failure.text or "")
            assert assignments.NOT_IMPLEMENTED in text, f"{where} failed without saying 'not implemented yet':\n{text[:800]}"
            assert not OTHER_ERRORS.search(text), f"{where} failed with another error:\n{text[:800]}"
