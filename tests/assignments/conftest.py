"""Graders for the course assignments (``notebooks/{en,zh}/assignments/AN_slug``).

Grade your own notebook (the ``.ipynb`` itself, or a ``.py`` written by jupytext) with one grader:

    .venv/bin/python -m pytest tests/assignments/test_a1_new_backbone.py --notebook path/to/A1_new_backbone.ipynb

Grade every assignment found in a folder (``--notebook-dir`` may be repeated; CI grades masters and student
versions in one run this way). In a folder, ``AN_slug.ipynb`` is graded when it is there, ``AN_slug.py`` only when
it is not; a ``.py`` beside the ``.ipynb`` whose code differs is reported in a warning, never graded:

    .venv/bin/python -m pytest tests/assignments --notebook-dir release/en

Without either option a grader grades the master notebook in ``notebooks/en/assignments/``, which passes, when
the command names this folder or a grader file; a plain ``pytest`` run skips the graders here, because
``tests/test_assignments.py`` already grades every master and every student version in one subprocess.

A grader runs the notebook's code cells once, top to bottom (in a temporary working directory, plots off, IPython
magics skipped), keeps whatever they defined, and tests those functions and classes on more cases than the
notebook's own check cells. A cell that fails does not stop the cells after it, as in nbgrader's autograding: a
wrong answer to one task costs that task, not the ones after it. A function that still raises
``NotImplementedError`` fails its tests with "... is not implemented yet"; any other failure is reported with its
cell and message. Messages are in the notebook's language (its ``LANG`` cell).
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
LANG_CELL = re.compile(r"""^LANG\s*=\s*["'](\w+)["']""", re.MULTILINE)
CODE_CELL = re.compile(r"^# %%(?! \[(markdown|md|raw)\])")


def pytest_addoption(parser):
    group = parser.getgroup("assignments", "course assignment graders")
    group.addoption("--notebook", default=None, help="the notebook to grade: AN_slug.ipynb, or its jupytext .py")
    group.addoption("--notebook-dir", action="append", default=[],
                    help="grade every AN_slug.ipynb (or, where there is none, AN_slug.py) in this folder")


def _number(name: str) -> str | None:
    match = re.match(r"(A\d+)_", name)
    return match.group(1) if match else None


def _find(folder: Path, number: str) -> Path | None:
    """The notebook of assignment ``number`` in ``folder``: the ``.ipynb``, else the ``.py``."""
    for suffix in (".ipynb", ".py"):
        found = sorted(folder.glob(f"{number}_*{suffix}"))
        if found:
            return found[0]
    return None


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
            found = _find(Path(folder).expanduser().resolve(), number)
            if found:
                params.append(pytest.param(found, id=str(folder)))
            else:
                reason = f"no {number}_*.ipynb or {number}_*.py in {folder}"
                params.append(pytest.param(None, id=str(folder), marks=pytest.mark.skip(reason=reason)))
        return params
    if not _targeted(config):
        reason = ("graded in tests/test_assignments.py; run `pytest tests/assignments` to grade the masters here, "
                  "or pass --notebook")
        return [pytest.param(None, id=f"master-{number}", marks=pytest.mark.skip(reason=reason))]
    return [pytest.param(MASTERS / f"{assignment}.ipynb", id=f"master-{number}")]


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


def script(path: Path) -> str:
    """The notebook's code as one Python script: a ``.py`` as it is; an ``.ipynb`` converted by jupytext, which
    writes the same percent format and turns IPython magics (``%time``, ``!pip``) into comments."""
    import jupytext

    if path.suffix == ".ipynb":
        return jupytext.writes(jupytext.read(path), fmt="py:percent")
    return path.read_text(encoding="utf-8")


def code_of(path: Path) -> list[str]:
    """The code cells of a notebook (``.ipynb`` or ``.py``), to tell whether two files hold the same work."""
    import jupytext

    return [cell.source.strip() for cell in jupytext.read(path).cells if cell.cell_type == "code"]


def _cells(source: str) -> list[tuple[int, str]]:
    """The script's cells, each with the number of lines before it (Markdown cells are comments: harmless)."""
    cells, start, lines = [], 0, source.splitlines(keepends=True)
    for index, line in enumerate(lines):
        if line.startswith("# %%") and index > start:
            cells.append((start, "".join(lines[start:index])))
            start = index
    cells.append((start, "".join(lines[start:])))
    return cells


class Notebook:
    """What a notebook's code defined when its cells ran top to bottom, and where the first one failed."""

    def __init__(self, path: Path, assignment: str) -> None:
        self.path, self.assignment = path, assignment
        self.number = _number(assignment)
        self.source = ""
        self.lang = "en"
        self.namespace: dict = {}
        self.stopped: BaseException | None = None
        self.stopped_at: int | None = None
        self.cache: dict = {}  # what a grader builds once and several tests use

    def say(self, en: str, zh: str) -> str:
        """A message in the notebook's language."""
        return zh if self.lang == "zh" else en

    def cached(self, key: str, build):
        """``build()`` once per notebook; graders use this instead of fixtures, so a failure counts as a failed
        test (with its message) rather than an error in set-up."""
        if key not in self.cache:
            self.cache[key] = build()
        return self.cache[key]

    def run(self, workdir: Path) -> None:
        if not self.path.is_file():
            pytest.fail(self.say(f"{self.number}: no notebook at {self.path}", f"{self.number}：{self.path} 处没有 notebook"),
                        pytrace=False)
        self.source = script(self.path)
        match = LANG_CELL.search(self.source)
        self.lang = match.group(1) if match else "en"
        module = types.ModuleType(f"graded_{self.number.lower()}")
        module.__file__ = str(self.path)
        sys.modules[module.__name__] = module
        self.namespace = module.__dict__
        cwd = Path.cwd()
        os.chdir(workdir)
        try:
            for first_line, cell in _cells(self.source):
                try:
                    # Padded with empty lines, so that tracebacks give the cell's line numbers in the whole script.
                    code = compile("\n" * first_line + cell, str(self.path), "exec")
                    with warnings.catch_warnings(record=True):  # the notebook's own warnings are part of its lesson
                        exec(code, self.namespace)
                except Exception as exc:  # a student's cell may fail; the tests report the first failure
                    if self.stopped is None:
                        self.stopped = exc
                        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == str(self.path)]
                        self.stopped_at = frames[-1].lineno if frames else None
        finally:
            os.chdir(cwd)
            if "matplotlib.pyplot" in sys.modules:
                sys.modules["matplotlib.pyplot"].close("all")

    def cell_at(self, lineno: int) -> tuple[str, int]:
        """The first line of the code cell that holds script line ``lineno``, and the line's number in that cell."""
        lines = self.source.splitlines()
        start = 0
        for index, line in enumerate(lines[:lineno], start=1):
            if line.startswith("# %%"):
                start = index if CODE_CELL.match(line) else 0
        body = lines[start:lineno]
        first = next((line.strip() for line in body if line.strip()), "")
        return first[:60], lineno - start

    def _where(self) -> str:
        if not self.stopped_at:
            return self.say(f"{self.path.name} failed", f"{self.path.name} 出错")
        first, line = self.cell_at(self.stopped_at)
        return self.say(f"{self.path.name} failed in the cell that begins `{first}` (line {line} of that cell)",
                        f"{self.path.name} 在以 `{first}` 开头的单元格出错（该单元格第 {line} 行）")

    def _stop(self) -> str:
        return f"{type(self.stopped).__name__}: {self.stopped}"

    def assert_ran_to_the_end(self) -> None:
        """Fail, saying where and why, unless every cell ran (the notebook's own check cells included)."""
        if isinstance(self.stopped, NotImplementedError):
            pytest.fail(self.say(
                f"{self.number}: the notebook is not implemented yet ({self._where()} with {self._stop()}).",
                f"{self.number}：notebook 尚未实现（{self._where()}，{self._stop()}）。"), pytrace=False)
        if self.stopped is not None:
            pytest.fail(self.say(
                f"{self.number}: {self._where()} with {self._stop()}\n"
                "Every cell, the check cells included, must run from top to bottom.",
                f"{self.number}：{self._where()}，{self._stop()}\n"
                "所有单元格（包括检查单元格）都必须能从头到尾运行。"), pytrace=False)

    def __getitem__(self, name: str):
        if name in self.namespace:
            return self.namespace[name]
        if isinstance(self.stopped, NotImplementedError):
            pytest.fail(self.say(
                f"{self.number}: `{name}` is not implemented yet ({self._where()} with {self._stop()}). "
                "Write your code where the notebook says `# YOUR CODE HERE`, then grade again.",
                f"{self.number}：`{name}` 尚未实现（{self._where()}，{self._stop()}）。"
                "请在 notebook 中标有 `# 在这里写你的代码` 的地方写好代码，然后重新评分。"), pytrace=False)
        if self.stopped is not None:
            pytest.fail(self.say(
                f"{self.number}: `{name}` was never defined, and a cell failed: {self._where()} with {self._stop()}\n"
                "Run the notebook top to bottom and fix that cell first.",
                f"{self.number}：`{name}` 一直没有定义，而且有单元格出错：{self._where()}，{self._stop()}\n"
                "请从头到尾运行 notebook，先修好那个单元格。"), pytrace=False)
        pytest.fail(self.say(
            f"{self.number}: the notebook ran to the end but defines no `{name}`; keep the names the assignment asks for.",
            f"{self.number}：notebook 运行完毕，但没有定义 `{name}`；请使用作业要求的名字。"), pytrace=False)


@pytest.fixture(scope="module")
def notebook(request, tmp_path_factory):
    """The graded notebook, run once per test module (and per notebook, when several are graded)."""
    if request.param is None:
        pytest.skip("no notebook to grade")
    from vla_backbone import hf_causal, tiny

    path = Path(request.param)
    twin = path.with_suffix(".py")
    if path.suffix == ".ipynb" and twin.is_file() and code_of(twin) != code_of(path):
        warnings.warn(f"graded {path.name}; {twin.name} beside it holds other code and was not graded", stacklevel=1)
    # A notebook may register a family (SPECIAL_CASES, TINY_SPECS) or patch the BOS check; undo that so other tests
    # see the package as is.
    special_cases, tiny_specs, check_bos = set(hf_causal.SPECIAL_CASES), dict(tiny.TINY_SPECS), hf_causal.check_bos
    graded = Notebook(path, request.module.ASSIGNMENT)
    graded.package_special_cases, graded.package_check_bos = frozenset(special_cases), check_bos
    graded.run(tmp_path_factory.mktemp(graded.number))
    yield graded
    hf_causal.check_bos = check_bos
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
        if notebook is None:
            raise
        frames = traceback.extract_tb(exc.__traceback__)
        inside = [f for f in frames if f.filename == str(notebook.path)]
        what = f"`{inside[-1].name}`" if inside else notebook.say("a function this test calls", "本测试调用的某个函数")
        message = notebook.say(f"{notebook.number}: {what} is not implemented yet (it raised NotImplementedError: {exc}).",
                               f"{notebook.number}：{what} 尚未实现（它抛出了 NotImplementedError: {exc}）。")
    # Outside the except block, so that pytest shows the one line and not the NotImplementedError chained to it.
    pytest.fail(message, pytrace=False)
