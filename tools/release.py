"""Course assignments: student versions of the master notebooks, with or without nbgrader.

    python -m tools.release [--out DIR]                  # student versions: DIR/en/, DIR/zh/ (default DIR: release/)
    python -m tools.release --nbgrader COURSE [--lang zh]  # the masters as nbgrader's COURSE/source/, for one language

Each master notebook ``notebooks/{en,zh}/assignments/AN_slug`` is nbgrader-native: its cells carry nbgrader's
metadata (solution cells, autograder tests with points, manually graded written answers), and inside them
nbgrader's delimiters, each alone on its line, mark what students must not see:

    ### BEGIN SOLUTION       ... ### END SOLUTION        (code cell: replaced by the stub below, indented like
                                                          the BEGIN line; Markdown cell: by the answer stub)
    ### BEGIN HIDDEN TESTS   ... ### END HIDDEN TESTS    (code cell: removed, delimiters included)

The stubs are in the notebook's language (``STUBS``); ``--nbgrader`` writes the same ones into
``nbgrader_config.py``, so ``nbgrader generate_assignment`` and this command give students the same text.

Without ``--nbgrader``, the masters' ``.py`` pairs are read (run ``python -m tools.suite sync`` after editing an
``.ipynb``) and each becomes ``DIR/LANG/AN_slug.ipynb`` + ``.py``: clean, without nbgrader metadata, and paired
through the notebook's own jupytext metadata, so saving it in JupyterLab updates the ``.py`` even outside this
repository. The graders in ``tests/assignments/`` grade the ``.ipynb`` itself (or a ``.py``).

With ``--nbgrader``, only ``.ipynb`` files go into ``COURSE/source/AN_slug/``: the jupytext ``.py`` twin of a
master holds the solutions as plain text, and nbgrader releases every other file of a source folder unchanged.
The command refuses to run while such a file is in ``COURSE/source/`` or ``COURSE/release/``.
"""
from __future__ import annotations

import argparse
import copy
import sys
from dataclasses import dataclass
from pathlib import Path

from tools import suite

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
DELIMITERS = (BEGIN_SOLUTION, END_SOLUTION, BEGIN_HIDDEN, END_HIDDEN)
DEFAULT_OUT = suite.ROOT / "release"
# The pairing a released notebook carries itself, since a student's folder has no jupytext.toml.
PAIRING = {"formats": "ipynb,py:percent", "notebook_metadata_filter": "-all", "cell_metadata_filter": "-all"}
NBGRADER_SCHEMA_VERSION = 3
# nbgrader's default ignore list, plus the jupytext twins: they would be released with the solutions in them.
NBGRADER_IGNORE = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "*.py"]


@dataclass(frozen=True)
class Stubs:
    """What replaces a solution in one language: nbgrader's ``code_stub`` and ``text_stub``."""

    not_implemented: str  # the NotImplementedError message, which the graders also print
    code_comment: str = "# YOUR CODE HERE"
    text: str = "YOUR ANSWER HERE"

    @property
    def code(self) -> str:
        return f'{self.code_comment}\nraise NotImplementedError("{self.not_implemented}")'


STUBS = {
    "en": Stubs("not implemented yet"),
    "zh": Stubs("尚未实现", code_comment="# 在这里写你的代码", text="在这里写你的答案"),
}


class MarkerError(ValueError):
    """A master notebook whose delimiters do not pair up."""


def masters(lang: str = "en") -> list[Path]:
    """The master notebooks (``.py`` pairs) of one language, A1 first."""
    return sorted((suite.NOTEBOOKS / lang / "assignments").glob("A[0-9]_*.py"))


def language(nb) -> str:
    """The notebook's language, from its language cell (``LANG = "zh"``); en when there is none."""
    for cell in nb.cells:
        for line in cell.source.splitlines() if cell.cell_type == "code" else ():
            if suite.LANG_LINE.match(line):
                return next((lang for lang in suite.LANGS if f'"{lang}"' in line or f"'{lang}'" in line), "en")
    return "en"


def _marker(line: str) -> str | None:
    stripped = line.strip()
    if stripped in DELIMITERS:
        return stripped
    if any(word in stripped for word in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")):
        raise MarkerError(f"a delimiter must stand alone on its line, exactly as nbgrader writes it: {line!r}")
    return None


def regions(source: str) -> dict[str, list[str]]:
    """The lines inside solution and hidden-test regions of one cell: ``{"solution": [...], "hidden": [...]}``."""
    found: dict[str, list[str]] = {"solution": [], "hidden": []}
    _split(source, found)
    return found


def _split(source: str, found: dict[str, list[str]] | None = None, stub: str | None = None) -> str:
    """``source`` with solution regions replaced by ``stub`` and hidden-test regions removed; checks the pairing."""
    kept: list[str] = []
    inside: str | None = None
    for line in source.split("\n"):
        marker = _marker(line)
        if marker in (BEGIN_SOLUTION, BEGIN_HIDDEN):
            if inside is not None:
                raise MarkerError(f"{marker!r} inside an open {inside!r} region (regions do not nest)")
            inside = marker
            if marker == BEGIN_SOLUTION and stub is not None:
                indent = line[: len(line) - len(line.lstrip())]
                kept.extend(indent + stub_line for stub_line in stub.split("\n"))
        elif marker in (END_SOLUTION, END_HIDDEN):
            expected = BEGIN_SOLUTION if marker == END_SOLUTION else BEGIN_HIDDEN
            if inside != expected:
                raise MarkerError(f"{marker!r} without a matching {expected!r}")
            inside = None
        elif inside is not None:
            if found is not None:
                found["solution" if inside == BEGIN_SOLUTION else "hidden"].append(line)
        else:
            kept.append(line)
    if inside is not None:
        raise MarkerError(f"{inside!r} is never closed")
    return "\n".join(kept)


def student_source(source: str, cell_type: str, lang: str = "en") -> str:
    """One cell of the student version (nbgrader's ClearSolutions and ClearHiddenTests, in one pass)."""
    if cell_type == "code":
        return _split(source, stub=STUBS[lang].code)
    if BEGIN_HIDDEN in source:
        raise MarkerError("hidden tests belong in code cells")
    return _split(source, stub=STUBS[lang].text)


def student_notebook(nb):
    """A copy of the master ``nb`` with every solution cleared, every hidden test and all nbgrader metadata removed,
    and the jupytext pairing in its metadata."""
    lang = language(nb)
    student = suite.clean(copy.deepcopy(nb))
    for index, cell in enumerate(student.cells):
        try:
            cell.source = student_source(cell.source, cell.cell_type, lang)
        except MarkerError as exc:
            raise MarkerError(f"cell {index}: {exc}") from None
        cell.metadata.pop("nbgrader", None)
    student.metadata["jupytext"] = dict(PAIRING)
    return student


def student_ipynb_text(student) -> str:
    """A student version as ``.ipynb`` text: a clean notebook that keeps its pairing metadata."""
    import nbformat

    return nbformat.writes(student, version=4) + "\n"


def grading_problems(nb) -> list[str]:
    """Where a master's nbgrader metadata disagrees with its delimiters or with nbgrader's rules (schema 3)."""
    problems, ids, points = [], set(), 0
    for index, cell in enumerate(nb.cells):
        where = f"cell {index} ({cell.cell_type})"
        try:
            found = regions(cell.source)
        except MarkerError as exc:
            problems.append(f"{where}: {exc}")
            continue
        meta = cell.metadata.get("nbgrader")
        if meta is None:
            if found["solution"] or found["hidden"]:
                problems.append(f"{where}: has a solution or hidden-test region but no nbgrader metadata")
            continue
        missing = [key for key in ("grade", "grade_id", "locked", "schema_version", "solution") if key not in meta]
        if missing:
            problems.append(f"{where}: nbgrader metadata lacks {', '.join(missing)}")
            continue
        if meta["schema_version"] != NBGRADER_SCHEMA_VERSION:
            problems.append(f"{where}: nbgrader schema_version {meta['schema_version']}, expected {NBGRADER_SCHEMA_VERSION}")
        if meta.get("task"):
            problems.append(f"{where}: task cells are not used in these assignments")
        if not meta["grade_id"] or meta["grade_id"] in ids:
            problems.append(f"{where}: grade_id {meta['grade_id']!r} is empty or used twice")
        ids.add(meta["grade_id"])
        solution, grade = bool(meta["solution"]), bool(meta["grade"])
        if solution != bool(found["solution"]):
            problems.append(f"{where}: nbgrader solution={solution}, but the cell {'lacks' if solution else 'has'} a "
                            f"{BEGIN_SOLUTION!r} region (a solution cell clears only its regions)")
        if found["hidden"] and not (grade and not solution and cell.cell_type == "code"):
            problems.append(f"{where}: hidden tests must sit in an autograder-test cell (grade, not solution)")
        if cell.cell_type == "markdown" and solution != grade:
            problems.append(f"{where}: a written answer is a manually graded answer: solution and grade, with points")
        if cell.cell_type == "code" and grade and solution:
            problems.append(f"{where}: a code cell is either a solution or a test, not both")
        if cell.cell_type == "code" and grade and not meta["locked"]:
            problems.append(f"{where}: an autograder-test cell must be locked (nbgrader restores it when grading)")
        if grade:
            if not isinstance(meta.get("points"), (int, float)) or meta["points"] <= 0:
                problems.append(f"{where}: a grade cell needs points > 0, has {meta.get('points')!r}")
            elif cell.cell_type == "code":
                points += meta["points"]
    if not points:
        problems.append("no autograder-test cell with points: nbgrader would grade every submission 0 of 0")
    return problems


def release(out: Path = DEFAULT_OUT) -> list[Path]:
    """Write the student version of every master, both languages, as ``.ipynb`` + ``.py``; return the paths."""
    written = []
    for lang in suite.LANGS:
        target = Path(out) / lang
        target.mkdir(parents=True, exist_ok=True)
        for master in masters(lang):
            try:
                student = student_notebook(suite.read(master))
            except MarkerError as exc:
                raise MarkerError(f"{master}: {exc}") from None
            for suffix, text in ((".ipynb", student_ipynb_text(student)), (".py", suite.py_text(student))):
                path = target / (master.stem + suffix)
                path.write_text(text, encoding="utf-8")
                written.append(path)
    return written


def leaks(course: Path) -> list[Path]:
    """Files other than notebooks under ``COURSE/source`` or ``COURSE/release`` that hold a delimiter line: nbgrader
    copies such a file to students unchanged, solutions included (the jupytext ``.py`` twin of a master)."""
    found = []
    for folder in (course / "source", course / "release"):
        for path in sorted(folder.rglob("*")) if folder.is_dir() else ():
            if not path.is_file() or path.suffix == ".ipynb" or ".ipynb_checkpoints" in path.parts:
                continue
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue
            if any(delimiter in text for delimiter in DELIMITERS):
                found.append(path)
    return found


def nbgrader_config(lang: str) -> str:
    """The ``nbgrader_config.py`` that makes ``nbgrader generate_assignment`` release what ``release`` releases."""
    stubs = STUBS[lang]
    return (
        "# nbgrader configuration for the vla-backbone course assignments (python -m tools.release --nbgrader).\n"
        "c = get_config()  # noqa: F821\n"
        f"# Solutions become the same stubs as in `python -m tools.release`, in the notebooks' language ({lang}).\n"
        f"c.ClearSolutions.code_stub = {{\"python\": {stubs.code!r}}}\n"
        f"c.ClearSolutions.text_stub = {stubs.text!r}\n"
        "# Only notebooks are released: a jupytext .py twin of a master would hand out its solutions as plain text.\n"
        f"c.CourseDirectory.ignore = {NBGRADER_IGNORE!r}\n"
        "# A cell may build a tiny replica on first use; nbgrader's default of 30 s per cell is tight on a busy CPU.\n"
        "c.Execute.timeout = 120\n"
    )


def nbgrader_source(course: Path, lang: str = "en") -> list[Path]:
    """Copy the masters of ``lang`` as ``COURSE/source/AN_slug/AN_slug.ipynb`` (notebooks only) and write
    ``COURSE/nbgrader_config.py`` unless there is one. Refuses while a solution-bearing non-notebook is there."""
    course = Path(course).expanduser().resolve()
    found = leaks(course)
    if found:
        listed = "\n  ".join(str(path) for path in found)
        raise MarkerError(f"these files hold solutions and nbgrader would hand them out unchanged:\n  {listed}\n"
                          "Delete them (and any release of them); only the .ipynb masters belong in source/.")
    written = []
    for master in masters(lang):
        nb = suite.read(master.with_suffix(".ipynb"))
        problems = grading_problems(nb)
        if problems:
            raise MarkerError(f"{master.with_suffix('.ipynb')}: " + "; ".join(problems))
        target = course / "source" / master.stem / f"{master.stem}.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(suite.ipynb_text(nb), encoding="utf-8")
        written.append(target)
    config = course / "nbgrader_config.py"
    if not config.exists():
        config.write_text(nbgrader_config(lang), encoding="utf-8")
        written.append(config)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.release", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="where the student versions go (default: release/ in this repository)")
    target.add_argument("--nbgrader", type=Path, metavar="COURSE",
                        help="an nbgrader course folder: write the masters into COURSE/source/ instead")
    parser.add_argument("--lang", choices=suite.LANGS, default="en", help="with --nbgrader: the course's language")
    args = parser.parse_args(argv)
    try:
        if args.nbgrader is not None:
            written = nbgrader_source(args.nbgrader, args.lang)
        else:
            written = release(args.out)
    except MarkerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    assignments = ", ".join(sorted({path.stem for path in written if path.suffix == ".ipynb"}))
    if args.nbgrader is not None:
        config = args.nbgrader / "nbgrader_config.py"
        note = "wrote" if any(path.name == "nbgrader_config.py" for path in written) else "kept your"
        print(f"masters ({args.lang}) in {args.nbgrader / 'source'}: {assignments}; {note} {config}\n"
              f"next, in {args.nbgrader}: nbgrader generate_assignment A1_new_backbone (and the others)")
        if note == "kept your":
            print(f"check that {config} holds these lines:\n{nbgrader_config(args.lang)}")
    else:
        print(f"wrote {len(written)} files to {args.out}: {assignments} (student versions, .ipynb and .py)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
