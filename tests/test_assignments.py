"""The course assignments hold together: masters pass their graders, student versions fail them cleanly.

`python -m tools.release` turns each master notebook (notebooks/{en,zh}/assignments/AN_slug) into a student
version. Here we release into a temporary folder and prove that
- every master carries nbgrader metadata that agrees with its delimiters, and the points its headings announce;
- every student version keeps no line of any solution and no hidden test, replaces each solution with the stub of
  its language, and carries its jupytext pairing, which works outside this repository;
- one pytest run of the graders (tests/assignments) passes on every master and, on every student version, fails
  every test with "not implemented yet" in the notebook's language and with no other kind of error, whether it
  grades the `.ipynb` or a `.py`; a finished `.ipynb` beside a stale `.py` is graded as finished;
- `--nbgrader` lays out only notebooks and refuses a course folder where a solution-bearing `.py` would leak.
The zh masters are not graded a second time: their code cells are the en ones (checked below), so they define the
same functions and classes. tests/test_nbgrader.py runs nbgrader itself on the masters.
"""
from __future__ import annotations

import os
import re
import shutil
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
POINTS = {"en": re.compile(r"\((\d+) points?\b"), "zh": re.compile(r"（(\d+) 分")}


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


@pytest.mark.parametrize("lang", suite.LANGS)
@pytest.mark.parametrize("master", _masters(), ids=lambda path: path.stem)
def test_master_is_nbgrader_native_and_its_headings_announce_its_points(master, lang):
    nb = suite.read(master.parents[2] / lang / "assignments" / master.with_suffix(".ipynb").name)
    assert assignments.grading_problems(nb) == []
    graded = [cell.metadata["nbgrader"] for cell in nb.cells if cell.metadata.get("nbgrader", {}).get("grade")]
    code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]
    tests = [cell for cell in code_cells if cell.metadata.get("nbgrader", {}).get("grade")]
    assert len(tests) >= 2, f"{lang}/{master.stem}: {len(tests)} graded check cell(s); partial credit needs two or more"
    announced = sum(int(points) for cell in nb.cells if cell.cell_type == "markdown"
                    for points in POINTS[lang].findall(cell.source))
    assert announced == sum(meta["points"] for meta in graded), (
        f"{lang}/{master.stem}: the headings announce {announced} points, the nbgrader metadata gives "
        f"{sum(meta['points'] for meta in graded)}"
    )


def test_sync_keeps_nbgrader_metadata_and_check_rejects_a_mismatch(tmp_path):
    master = _masters()[0]
    nb = suite.read(master)
    again = suite.read(_write(tmp_path / "again.py", suite.py_text(nb)))
    assert suite.grading(again) == suite.grading(nb) and any(suite.grading(nb)), ".py lost the nbgrader metadata"
    assert suite.grading(suite.read(_write(tmp_path / "again.ipynb", suite.ipynb_text(nb)))) == suite.grading(nb)
    graded = next(cell for cell in nb.cells if cell.metadata.get("nbgrader", {}).get("grade"))
    graded.metadata["nbgrader"]["points"] = 0
    assert any("points > 0" in problem for problem in assignments.grading_problems(nb))
    solution = next(cell for cell in nb.cells if cell.metadata.get("nbgrader", {}).get("solution"))
    del solution.metadata["nbgrader"]
    assert any("no nbgrader metadata" in problem for problem in assignments.grading_problems(nb))


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_release_writes_clean_pairs_that_carry_their_pairing(released):
    for lang in suite.LANGS:
        for master in assignments.masters(lang):
            ipynb, py = released / lang / f"{master.stem}.ipynb", released / lang / f"{master.stem}.py"
            assert ipynb.is_file() and py.is_file(), f"{lang}/{master.stem}: release wrote no .ipynb/.py pair"
            nb = suite.read(ipynb)
            assert ipynb.read_text(encoding="utf-8") == assignments.student_ipynb_text(nb), f"{ipynb.name}: not clean"
            assert nb.metadata.get("jupytext", {}).get("formats") == "ipynb,py:percent", f"{ipynb.name}: not paired"
            assert not any(suite.grading(nb)), f"{lang}/{ipynb.name}: a student version keeps nbgrader metadata"
            assert py.read_text(encoding="utf-8") == suite.py_text(nb), f"{lang}/{py.name}: .py and .ipynb differ"


def test_a_released_notebook_updates_its_py_outside_the_repository(released, tmp_path):
    """A student's folder has no jupytext.toml: the notebook's own metadata pairs it, so saving updates the .py."""
    assert not (REPO in tmp_path.parents), "the temporary folder must lie outside the repository"
    for suffix in (".ipynb", ".py"):
        shutil.copy(released / "en" / f"A2_prompt_builder{suffix}", tmp_path)
    student = tmp_path / "A2_prompt_builder.ipynb"
    nb = suite.read(student)
    stub = f'raise NotImplementedError("{assignments.STUBS["en"].not_implemented}")'
    cell = next(cell for cell in nb.cells if cell.cell_type == "code" and stub in cell.source)
    cell.source = cell.source.replace(stub, "return 'finished work'")
    student.write_text(assignments.student_ipynb_text(nb), encoding="utf-8")
    jupytext = Path(sys.executable).parent / "jupytext"
    result = subprocess.run([str(jupytext), "--sync", str(student)], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "return 'finished work'" in (tmp_path / "A2_prompt_builder.py").read_text(encoding="utf-8")


@pytest.mark.parametrize("lang", suite.LANGS)
def test_student_versions_hold_no_solution_and_no_hidden_test(released, lang):
    markers = assignments.DELIMITERS
    stubs = assignments.STUBS[lang]
    for master in assignments.masters(lang):
        nb = suite.read(master)
        secret, public, code_regions, text_regions = set(), set(), 0, 0
        for cell in nb.cells:
            parts = assignments.regions(cell.source)
            secret |= {line.strip() for line in parts["solution"] + parts["hidden"] if line.strip()}
            public |= {line.strip() for line in assignments.student_source(cell.source, cell.cell_type, lang).split("\n")}
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
            cells = suite.read(student).cells
            code = [line.strip() for cell in cells if cell.cell_type == "code" for line in cell.source.split("\n")]
            prose = "\n".join(cell.source for cell in cells if cell.cell_type == "markdown")
            for stub_line in stubs.code.split("\n"):
                assert code.count(stub_line) == code_regions, f"{lang}/{student.name}: one {stub_line!r} per solution"
            assert prose.count(stubs.text) == text_regions, f"{lang}/{student.name}: one answer stub per written answer"


def test_unbalanced_markers_are_refused():
    with pytest.raises(assignments.MarkerError, match="never closed"):
        assignments.student_source("x = 1\n### BEGIN SOLUTION\ny = 2", "code")
    with pytest.raises(assignments.MarkerError, match="do not nest"):
        assignments.student_source("### BEGIN SOLUTION\n### BEGIN HIDDEN TESTS\n### END HIDDEN TESTS", "code")
    with pytest.raises(assignments.MarkerError, match="stand alone"):
        assignments.student_source("x = 1  ### BEGIN SOLUTION", "code")


def test_stub_keeps_the_indentation_of_its_region_in_each_language():
    source = "def f(x):\n    '''Doc.'''\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION\n"
    assert assignments.student_source(source, "code") == (
        "def f(x):\n    '''Doc.'''\n    # YOUR CODE HERE\n    raise NotImplementedError(\"not implemented yet\")\n"
    )
    assert assignments.student_source(source, "code", "zh") == (
        "def f(x):\n    '''Doc.'''\n    # 在这里写你的代码\n    raise NotImplementedError(\"尚未实现\")\n"
    )


def test_release_command_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "tools.release", "--out", str(tmp_path / "handout")], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "handout" / "zh").iterdir()) == sorted(
        f"{m.stem}{suffix}" for m in assignments.masters("zh") for suffix in (".ipynb", ".py"))


def test_nbgrader_layout_holds_only_notebooks_and_refuses_a_leaking_py(tmp_path):
    course = tmp_path / "course"
    written = assignments.nbgrader_source(course, "zh")
    sources = sorted(path.relative_to(course).as_posix() for path in (course / "source").rglob("*") if path.is_file())
    assert sources == [f"source/{m.stem}/{m.stem}.ipynb" for m in assignments.masters("zh")]
    config = (course / "nbgrader_config.py").read_text(encoding="utf-8")
    assert repr(assignments.STUBS["zh"].code) in config and "'*.py'" in config and course / "nbgrader_config.py" in written
    nb = suite.read(course / "source" / "A1_new_backbone" / "A1_new_backbone.ipynb")
    assert any(suite.grading(nb)) and assignments.language(nb) == "zh"

    # The easy mistake: the jupytext twin of a master copied into source/ (nbgrader would release it as it is).
    shutil.copy(assignments.masters("zh")[0], course / "source" / "A1_new_backbone")
    with pytest.raises(assignments.MarkerError, match="A1_new_backbone.py"):
        assignments.nbgrader_source(course, "zh")
    result = subprocess.run([sys.executable, "-m", "tools.release", "--nbgrader", str(course)], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 1 and "hold solutions" in result.stderr and "Delete them" in result.stderr


def _grade(released: Path, tmp_path: Path) -> tuple[dict, str]:
    """One pytest run of every grader: the en masters; the en student versions as released (.ipynb beside .py);
    the zh student versions as .py files alone; and a finished A2 .ipynb beside the stale .py it was handed out with."""
    py_only, stale = tmp_path / "zh-py", tmp_path / "stale"
    py_only.mkdir()
    stale.mkdir()
    for path in (released / "zh").glob("*.py"):
        shutil.copy(path, py_only)
    shutil.copy(REPO / "notebooks" / "en" / "assignments" / "A2_prompt_builder.ipynb", stale)
    shutil.copy(released / "en" / "A2_prompt_builder.py", stale)
    folders = {
        "master": REPO / "notebooks" / "en" / "assignments",
        "student-en": released / "en",
        "student-zh": py_only,
        "stale-py": stale,
    }
    report = tmp_path / "junit.xml"
    command = [sys.executable, "-m", "pytest", str(GRADERS), "-p", "no:cacheprovider", "-q", "-rw",
               f"--junitxml={report}"]
    for folder in folders.values():
        command += ["--notebook-dir", str(folder)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    output = result.stdout + result.stderr
    assert report.is_file(), f"the graders did not run:\n{output[-3000:]}"
    cases: dict[str, list] = {kind: [] for kind in folders}
    for case in ET.parse(report).getroot().iter("testcase"):
        name = case.get("name")
        kind = next((k for k, folder in folders.items() if f"[{folder}" in name), None)
        assert kind is not None, f"cannot tell which notebook {name} graded"
        cases[kind].append(case)
    return cases, output


def _problems(cases: list) -> list[str]:
    return [f"{c.get('classname')}::{c.get('name')}: {problem.get('message')}"
            for c in cases for problem in (c.find("failure"), c.find("error")) if problem is not None]


def test_masters_pass_their_graders_and_student_versions_fail_them_cleanly(released, tmp_path):
    # One test, so that one grading run serves every check even when pytest-xdist spreads tests over workers.
    cases, output = _grade(released, tmp_path)

    masters = cases["master"]
    assert len(masters) >= 40, f"only {len(masters)} grader tests ran on the masters:\n{output[-3000:]}"
    assert not _problems(masters), "masters fail their graders:\n" + "\n".join(_problems(masters))
    skipped = [c.get("name") for c in masters if c.find("skipped") is not None]
    assert all("real_two_process_run" in name for name in skipped), f"masters skipped {skipped}"

    stale = [c for c in cases["stale-py"] if c.find("skipped") is None]
    assert stale and not _problems(stale), "a finished .ipynb beside a stale .py:\n" + "\n".join(_problems(stale))
    assert "A2_prompt_builder.py beside it holds other code and was not graded" in output, "no warning about the .py"

    for kind, lang in (("student-en", "en"), ("student-zh", "zh")):
        ran = [c for c in cases[kind] if c.find("skipped") is None]
        assert len(ran) >= 40, f"only {len(ran)} grader tests ran on {kind}:\n{output[-3000:]}"
        for case in ran:
            where = f"{kind}: {case.get('classname')}::{case.get('name')}"
            assert case.find("error") is None, f"{where} errored instead of failing: {case.find('error').get('message')}"
            failure = case.find("failure")
            assert failure is not None, f"{where} passed on a student version"
            text = (failure.get("message") or "") + "\n" + (failure.text or "")
            not_implemented = assignments.STUBS[lang].not_implemented
            assert not_implemented in text, f"{where} failed without saying {not_implemented!r}:\n{text[:800]}"
            if lang == "zh":
                assert "is not implemented yet" not in text, f"{where} speaks English to a zh notebook:\n{text[:800]}"
            assert not OTHER_ERRORS.search(text), f"{where} failed with another error:\n{text[:800]}"
            assert "During handling of the above exception" not in text, f"{where} shows a chained traceback:\n{text[:800]}"
