"""Course assignments: make the student versions of the master notebooks, with nbgrader's markers.

    python -m tools.release release [--out DIR]   # default DIR: release/

Each master notebook ``notebooks/{en,zh}/assignments/AN_slug`` holds the solutions and the hidden tests between
nbgrader's delimiters, one per line:

    ### BEGIN SOLUTION       ... ### END SOLUTION        (code cell: replaced by the stub below, indented like
                                                          the BEGIN line; Markdown cell: by "YOUR ANSWER HERE")
    ### BEGIN HIDDEN TESTS   ... ### END HIDDEN TESTS    (code cell: removed, delimiters included)

The stub is nbgrader's, with a message that says what happened when a student runs the cell unchanged:

    # YOUR CODE HERE
    raise NotImplementedError("not implemented yet")

``release`` reads the masters' ``.py`` pairs (run ``python -m tools.suite sync`` after editing an
``.ipynb``) and writes ``DIR/en/AN_slug.ipynb`` + ``.py`` and the same for zh, clean (no outputs, no metadata),
through :mod:`tools.suite`'s reader and writers, so a student version is formatted exactly like the masters.
The graders in ``tests/assignments/`` grade either version: ``pytest tests/assignments/test_a1_*.py --notebook FILE``.

Why not ``nbgrader generate_assignment`` itself: it needs a course directory, a gradebook database and its own
Jupyter server extension; here the student versions are plain ``.ipynb`` + ``.py`` pairs that CI builds and grades
offline in seconds. The delimiters are nbgrader's, so an instructor can still run nbgrader on the masters.
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

from tools import suite

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
NOT_IMPLEMENTED = "not implemented yet"
CODE_STUB = f'# YOUR CODE HERE\nraise NotImplementedError("{NOT_IMPLEMENTED}")'
TEXT_STUB = "YOUR ANSWER HERE"
DEFAULT_OUT = suite.ROOT / "release"


class MarkerError(ValueError):
    """A master notebook whose delimiters do not pair up."""


def masters(lang: str = "en") -> list[Path]:
    """The master notebooks (``.py`` pairs) of one language, A1 first."""
    return sorted((suite.NOTEBOOKS / lang / "assignments").glob("A[0-9]_*.py"))


def _marker(line: str) -> str | None:
    stripped = line.strip()
    if stripped in (BEGIN_SOLUTION, END_SOLUTION, BEGIN_HIDDEN, END_HIDDEN):
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


def student_source(source: str, cell_type: str) -> str:
    """One cell of the student version (nbgrader's ClearSolutions and ClearHiddenTests, in one pass)."""
    if cell_type == "code":
        return _split(source, stub=CODE_STUB)
    if BEGIN_HIDDEN in source:
        raise MarkerError("hidden tests belong in code cells")
    return _split(source, stub=TEXT_STUB)


def student_notebook(nb):
    """A copy of the master notebook ``nb`` with every solution cleared and every hidden test removed."""
    student = copy.deepcopy(nb)
    for index, cell in enumerate(student.cells):
        try:
            cell.source = student_source(cell.source, cell.cell_type)
        except MarkerError as exc:
            raise MarkerError(f"cell {index}: {exc}") from None
    return student


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
            for suffix, text in ((".ipynb", suite.ipynb_text(student)), (".py", suite.py_text(student))):
                path = target / (master.stem + suffix)
                path.write_text(text, encoding="utf-8")
                written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("release", help="write the student versions")
    command.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: release/)")
    args = parser.parse_args(argv)
    try:
        written = release(args.out)
    except MarkerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    assignments = sorted({path.stem for path in written})
    print(f"wrote {len(written)} files to {args.out}: {', '.join(assignments)} (student versions, .ipynb and .py)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
