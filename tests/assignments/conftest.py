"""Graders for the course assignments (``notebooks/{en,zh}/assignments/AN_slug``).

Grade your own notebook (its jupytext ``.py`` pair) with one grader:

    pytest tests/assignments/test_a1_new_backbone.py --notebook path/to/A1_new_backbone.py

Grade every assignment found in a folder (``--notebook-dir`` may be repeated; CI grades masters and student
versions in one run this way):

    pytest tests/assignments --notebook-dir release/en

Without either option a grader grades the master notebook in ``notebooks/en/assignments/``, which passes, when
the command names this folder or a grader file; a plain ``pytest`` run skips the graders here, because
``tests/test_assignments.py`` already grades every master and every student version in one subprocess.

A grader runs the notebook once as a script (in a temporary working directory, plots off), keeps whatever it
defined, and tests those functions and classes on more cases than the notebook's own check cells. If the notebook
stops at a cell that still says ``raise NotImplementedError``, every test that needs a name the notebook did not
get to fails with "... is not implemented yet"; any other stop is reported with its cell's line and message.
"""
from __future__ import annotations

import os
import re
import sys
import traceback
import types
import warnings
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")  # plots are drawn off screen; plt.show() does nothing

REPO = Path(__file__).resolve().parents[2]
MASTERS = REPO / "notebooks" / "en" / "assignments"


def pytest_addoption(parser):
    group = parser.getgroup("assignments", "course assignment graders")
    group.addoption("--notebook", default=None, help="the notebook .py (jupytext pair) to grade")
    group.addoption("--notebook-dir", action="append", default=[], help="grade every AN_*.py in this folder")


def _number(name: str) -> str | None:
    match = re.match(r"(A\d+)_", name)
    return match.group(1) if match else None


def _notebooks_for(assignment: str, config) -> list:
    """The notebooks this grader grades: pytest params, each marked skip when it does not apply."""
    number = _number(assignment)
    single = config.getoption("--notebook", default=None)
    folders = config.getoption("--notebook-dir", default=None) or []
    if single:
        path = Path(single).expanduser().resolve()
        other = _number(path.name)
        if other is not None and other != number:
            reason = f"this grader is for {number}; --notebook names {path.name}"
            return [pytest.param(path, id=path.name, marks=pytest.mark.skip(reason=reason))]
        return [pytest.param(path, id=path.name)]
    if folders:
        params = []
        for folder in folders:
            found = sorted(Path(folder).expanduser().resolve().glob(f"{number}_*.py"))
            if found:
                params.append(pytest.param(found[0], id=str(folder)))
            else:
                reason = f"no {number}_*.py in {folder}"
                params.append(pytest.param(None, id=str(folder), marks=pytest.mark.skip(reason=reason)))
        return params
    if not _targeted(config):
        reason = ("graded in tests/test_assignments.py; run `pytest tests/assignments` to grade the masters here, "
                  "or pass --notebook")
        return [pytest.param(None, id=f"master-{number}", marks=pytest.mark.skip(reason=reason))]
    return [pytest.param(MASTERS / f"{assignment}.py", id=f"master-{number}")]


def _targeted(config) -> bool:
    """Whether the command line names this folder or a file in it (a plain `pytest` run does not)."""
    here = Path(__file__).resolve().parent
    for arg in config.args:
        path = (Path(config.invocation_params.dir) / arg.split("::")[0]).resolve()
        if path == here or here in path.parents:
            return True
    return False


def pytest_generate_tests(metafunc):
    if "notebook" in metafunc.fixturenames:
        assignment = metafunc.module.ASSIGNMENT
        metafunc.parametrize("notebook", _notebooks_for(assignment, metafunc.config), indirect=True, scope="module")


class Notebook:
    """What a notebook script defined when run top to bottom, and where it stopped if it did not finish."""

    def __init__(self, path: Path, assignment: str) -> None:
        self.path, self.assignment = path, assignment
        self.number = _number(assignment)
        self.namespace: dict = {}
        self.stopped: BaseException | None = None
        self.stopped_at: int | None = None
        self.cache: dict = {}  # what a grader builds once and several tests use

    def cached(self, key: str, build):
        """``build()`` once per notebook; graders use this instead of fixtures, so a failure counts as a failed
        test (with its message) rather than an error in set-up."""
        if key not in self.cache:
            self.cache[key] = build()
        return self.cache[key]

    def run(self, workdir: Path) -> None:
        if not self.path.is_file():
            pytest.fail(f"{self.number}: no notebook at {self.path}", pytrace=False)
        source = self.path.read_text(encoding="utf-8")
        module = types.ModuleType(f"graded_{self.number.lower()}")
        module.__file__ = str(self.path)
        sys.modules[module.__name__] = module
        self.namespace = module.__dict__
        cwd = Path.cwd()
        os.chdir(workdir)
        try:
            with warnings.catch_warnings(record=True):  # the notebook's own warnings are part of its lesson
                exec(compile(source, str(self.path), "exec"), self.namespace)
        except Exception as exc:  # a student's notebook may stop anywhere; the tests report it
            self.stopped = exc
            frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == str(self.path)]
            self.stopped_at = frames[-1].lineno if frames else None
        finally:
            os.chdir(cwd)
            if "matplotlib.pyplot" in sys.modules:
                sys.modules["matplotlib.pyplot"].close("all")

    def _where(self) -> str:
        line = f" at line {self.stopped_at}" if self.stopped_at else ""
        return f"{self.path.name} stopped{line}"

    def assert_ran_to_the_end(self) -> None:
        """Fail, saying where and why, unless every cell ran (the notebook's own check cells included)."""
        if isinstance(self.stopped, NotImplementedError):
            pytest.fail(f"{self.number}: the notebook is not implemented yet ({self._where()} with "
                        f"NotImplementedError: {self.stopped}).", pytrace=False)
        if self.stopped is not None:
            pytest.fail(f"{self.number}: {self._where()} with {type(self.stopped).__name__}: {self.stopped}\n"
                        "Every cell, the check cells included, must run from top to bottom.", pytrace=False)

    def __getitem__(self, name: str):
        if name in self.namespace:
            return self.namespace[name]
        if isinstance(self.stopped, NotImplementedError):
            pytest.fail(
                f"{self.number}: `{name}` is not implemented yet ({self._where()} with NotImplementedError: "
                f"{self.stopped}). Write your code where the notebook says `# YOUR CODE HERE`, then grade again.",
                pytrace=False,
            )
        if self.stopped is not None:
            pytest.fail(
                f"{self.number}: {self._where()} with {type(self.stopped).__name__}: {self.stopped}\n"
                f"before it defined `{name}`. Run the notebook top to bottom and fix that cell first.",
                pytrace=False,
            )
        pytest.fail(f"{self.number}: the notebook ran to the end but defines no `{name}`; keep the names the "
                    "assignment asks for.", pytrace=False)


@pytest.fixture(scope="module")
def notebook(request, tmp_path_factory):
    """The graded notebook, run once per test module (and per notebook, when several are graded)."""
    if request.param is None:
        pytest.skip("no notebook to grade")
    from vla_backbone import hf_causal, tiny

    # A notebook may register a family (SPECIAL_CASES, TINY_SPECS); undo that so other tests see the package as is.
    special_cases, tiny_specs = set(hf_causal.SPECIAL_CASES), dict(tiny.TINY_SPECS)
    graded = Notebook(Path(request.param), request.module.ASSIGNMENT)
    graded.package_special_cases = frozenset(special_cases)
    graded.run(tmp_path_factory.mktemp(graded.number))
    yield graded
    hf_causal.SPECIAL_CASES.clear()
    hf_causal.SPECIAL_CASES.update(special_cases)
    tiny.TINY_SPECS.clear()
    tiny.TINY_SPECS.update(tiny_specs)
    sys.modules.pop(f"graded_{graded.number.lower()}", None)


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem):
    """A graded function that still raises NotImplementedError fails with one clear line, not a traceback."""
    try:
        return (yield)
    except NotImplementedError as exc:
        notebook = pyfuncitem.funcargs.get("notebook")
        frames = traceback.extract_tb(exc.__traceback__)
        inside = [f for f in frames if notebook is not None and f.filename == str(notebook.path)]
        what = f"`{inside[-1].name}`" if inside else "a function this test calls"
        number = notebook.number if notebook is not None else "this assignment"
        pytest.fail(f"{number}: {what} is not implemented yet (it raised NotImplementedError: {exc}).", pytrace=False)
