"""nbgrader itself, on the masters, in a temporary course directory: what an instructor running nbgrader 0.9 gets.

- `python -m tools.release --nbgrader COURSE` lays out COURSE/source/AN_slug/AN_slug.ipynb and nbgrader_config.py;
- `nbgrader generate_assignment` releases notebooks with no solution and no hidden test, cell for cell the text
  `python -m tools.release` writes, even when the jupytext `.py` twin of a master was copied into source/ by mistake;
- `nbgrader autograde` gives every master every autograded point (and full marks once the written answers are
  graded by hand), every untouched release less, and a typical wrong answer some points but not all.

Needs nbgrader (requirements-course.txt); tests/run_all.sh installs it and runs this file after the main run.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tools import release, suite

pytest.importorskip("nbgrader", reason="nbgrader is not installed: pip install -r requirements-course.txt "
                                       "(tests/run_all.sh does, then runs this file)")

ASSIGNMENTS = [path.stem for path in release.masters("en")]
# One typical mistake per assignment, as a change to the master's solution: (what the master says, the mistake).
MISTAKES = {
    # The template forgets to write <|endoftext|> first: the backbone loads, the BOS rule fails.
    "A1_new_backbone": ("        return self.bos + self.wrap_human(message)", "        return self.wrap_human(message)"),
    # Special tokens (BOS) for every turn, not only the first: the builder is right, the labels are not.
    "A2_prompt_builder": ("add_special_tokens=index == 0", "add_special_tokens=True"),
    # The input-grad hook instead of non-reentrant checkpointing: inputs_embeds still reach no adapter.
    "A3_gradient_flow": ("    compat.enable_checkpointing(model, use_reentrant=False)\n    ### END SOLUTION",
                         "    model.enable_input_require_grads()\n    ### END SOLUTION"),
    # Shares without FSDP's padding: the plan is right, the shares are off by the remainder.
    "A4_fsdp_plan": ("chunk = math.ceil(numel / world_size)", "chunk = numel // world_size"),
    # The patches before BOS instead of after it.
    "A5_splice_patches": ("embeds = torch.cat([input_embeds[:, :1], patch_embeds, input_embeds[:, 1:]], dim=1)",
                          "embeds = torch.cat([patch_embeds, input_embeds], dim=1)"),
}


def _nbgrader(course: Path, *args: str) -> str:
    # nbgrader runs its database migrations through the `alembic` command, so the venv's bin/ must be on PATH.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    result = subprocess.run([sys.executable, "-m", "nbgrader", *args, "--log-level=WARN"], cwd=course, env=env,
                            capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def _course(root: Path, lang: str) -> Path:
    course = root / f"course-{lang}"
    release.nbgrader_source(course, lang)
    # The easy mistake: the jupytext twin (solutions as plain text) copied into source/ beside its notebook.
    shutil.copy(release.masters(lang)[0], course / "source" / ASSIGNMENTS[0])
    _nbgrader(course, "generate_assignment", "A*", "--force")
    return course


@pytest.fixture(scope="module")
def courses(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("nbgrader")
    return {lang: _course(root, lang) for lang in suite.LANGS}


@pytest.fixture(scope="module")
def gradebook(courses):
    """Autograde three submissions of every assignment: the master, the untouched release, a typical mistake."""
    from nbgrader.api import Gradebook

    course = courses["en"]
    for assignment in ASSIGNMENTS:
        master = course / "source" / assignment / f"{assignment}.ipynb"
        submissions = {
            "master": master.read_text(encoding="utf-8"),
            "untouched": (course / "release" / assignment / f"{assignment}.ipynb").read_text(encoding="utf-8"),
            "mistake": _with_mistake(master, *MISTAKES[assignment]),
        }
        for student, text in submissions.items():
            target = course / "submitted" / student / assignment / f"{assignment}.ipynb"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
    _nbgrader(course, "autograde", "A*", "--force")
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        yield gb


def _with_mistake(master: Path, right: str, wrong: str) -> str:
    nb = json.loads(master.read_text(encoding="utf-8"))
    cells = [cell for cell in nb["cells"] if right in "".join(cell["source"])]
    assert len(cells) == 1, f"{master.name}: the mistake's anchor {right!r} is in {len(cells)} cells"
    cells[0]["source"] = "".join(cells[0]["source"]).replace(right, wrong)
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


@pytest.mark.parametrize("lang", suite.LANGS)
def test_generate_assignment_releases_exactly_the_student_versions(courses, lang):
    course = courses[lang]
    for master in release.masters(lang):
        folder = course / "release" / master.stem
        assert sorted(path.name for path in folder.iterdir()) == [f"{master.stem}.ipynb"], (
            f"nbgrader released {sorted(path.name for path in folder.iterdir())}: only the notebook may go to students"
        )
        released = suite.read(folder / f"{master.stem}.ipynb")
        ours = release.student_notebook(suite.read(master))
        assert [cell.source for cell in released.cells] == [cell.source for cell in ours.cells], (
            f"{lang}/{master.stem}: nbgrader's student version differs from `python -m tools.release`'s"
        )
        text = (folder / f"{master.stem}.ipynb").read_text(encoding="utf-8")
        assert not any(delimiter in text for delimiter in release.DELIMITERS), f"{master.stem}: a delimiter was released"
        secret = {line.strip() for cell in suite.read(master).cells
                  for part in release.regions(cell.source).values() for line in part if line.strip()}
        public = {line.strip() for cell in ours.cells for line in cell.source.split("\n")}
        handed_out = {line.strip() for cell in released.cells for line in cell.source.split("\n")}
        leaked = sorted((secret - public) & handed_out)
        assert not leaked, f"{lang}/{master.stem}: nbgrader released solution or hidden-test lines: {leaked[:3]}"
        assert release.STUBS[lang].not_implemented in text


def _scores(gb, assignment: str, student: str) -> tuple[float, float, list]:
    submission = gb.find_submission(assignment, student)
    grades = [grade for notebook in submission.notebooks for grade in notebook.grades]
    return submission.score, submission.max_score, grades


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_autograde_gives_the_master_full_marks(gradebook, assignment):
    score, max_score, grades = _scores(gradebook, assignment, "master")
    autograded = [grade for grade in grades if not grade.needs_manual_grade]
    assert autograded and all(grade.auto_score == grade.max_score for grade in autograded), (
        f"{assignment}: the master lost autograded points: {[(g.name, g.auto_score, g.max_score) for g in autograded]}"
    )
    assert sum(grade.max_score for grade in autograded) > 0
    # Written answers wait for the instructor; grade them as the formgrader would, at full marks.
    for grade in grades:
        if grade.needs_manual_grade:
            assert grade.cell.cell_type == "markdown", f"{assignment}: code cell {grade.name} needs a manual grade"
            grade.manual_score = grade.max_score
    gradebook.db.commit()
    score, max_score, _ = _scores(gradebook, assignment, "master")
    assert score == max_score > 0, f"{assignment}: the master scores {score} of {max_score}"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_autograde_gives_an_untouched_release_less(gradebook, assignment):
    score, max_score, grades = _scores(gradebook, assignment, "untouched")
    assert max_score > 0 and score < max_score, f"{assignment}: the untouched release scores {score} of {max_score}"
    assert not any(grade.needs_manual_grade for grade in grades), f"{assignment}: an unchanged stub needs no reading"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_autograde_gives_a_typical_mistake_partial_marks(gradebook, assignment):
    _, _, grades = _scores(gradebook, assignment, "mistake")
    autograded = [grade for grade in grades if grade.cell.cell_type == "code"]
    got, most = sum(grade.auto_score for grade in autograded), sum(grade.max_score for grade in autograded)
    assert 0 < got < most, (
        f"{assignment}: a typical mistake scores {got} of {most} autograded points; expected partial marks: "
        f"{[(g.name, g.auto_score, g.max_score) for g in autograded]}"
    )
