#!/usr/bin/env bash
# Set up and run every test, from a fresh clone: the package, the suite checks, every notebook in both languages
# (nbmake, widgets included), the notebook scripts, the assignments and the book (built, then opened in Chromium) on
# the newest transformers 5.x; the learner's path in JupyterLab and Chromium (Run All and every widget option, both
# languages); nbgrader on the assignments; then the package tests and the notebooks again on the oldest supported
# transformers (4.57.6), so that every version branch runs. Offline at run time; installing needs the package
# registry (and apt for Chromium and the CJK fonts, when missing and running as root, as CI does).
# Time budgets are measured by `python -m tools.bench` (docs/benchmarks.md), never asserted here: the per-cell
# timeout below only catches a hang.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
CELL_TIMEOUT_S=300

# torch first, so that requirements.txt's range is already satisfied and pulls no multi-GB CUDA build.
$PYTHON -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -r requirements.txt

# Debian's Chromium (driven by Playwright, no browser download) and the CJK fonts the Chinese pages and plots use.
if ! dpkg -s chromium fonts-noto-cjk >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk
    else
        echo "run_all.sh: the browser tests need Debian's chromium and fonts-noto-cjk (apt-get install, as root)" >&2
    fi
fi

# The executed bilingual book (both languages, every notebook run once, cached); its tests run in the exclusive run.
bash book/build.sh
HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -n 2 --nbmake --nbmake-timeout=$CELL_TIMEOUT_S -m "not exclusive and not browser"
HF_HUB_OFFLINE=1 .venv/bin/python -m pytest --nbmake --nbmake-timeout=$CELL_TIMEOUT_S -m "exclusive and not browser"
# A4's optional check against two real processes (instructors opt in with VLA_GRADE_TORCHRUN=1), on the master, here
# where both cores are free.
HF_HUB_OFFLINE=1 VLA_GRADE_TORCHRUN=1 .venv/bin/python -m pytest tests/assignments/test_a4_fsdp_plan.py -k real_two_process_run

# --- The learner in a real browser: JupyterLab in Debian's Chromium. Screenshots land in test-artifacts/browser/.
# Two workers, each with its own JupyterLab server and Chromium.
HF_HUB_OFFLINE=1 VLA_BACKBONE_REQUIRE_BROWSER=1 .venv/bin/python -m pytest -n 2 tests/browser/test_jupyterlab.py

# --- The instructor's extras (nbgrader), once the environment has been tested as a learner gets it; then nbgrader
# itself on the masters (the main run skipped that file; the import makes a missing install fail, not skip).
.venv/bin/python -m pip install -q -r requirements-course.txt
.venv/bin/python -c "import nbgrader"
HF_HUB_OFFLINE=1 .venv/bin/python -m pytest tests/test_nbgrader.py

# --- The oldest supported transformers: the package tests, and the notebooks (en only: the zh code cells are the
# same, which the suite check proves) so that every `else:` branch for 4.57 runs.
$PYTHON -m venv .venv-oldest
.venv-oldest/bin/python -m pip install -q --upgrade pip
.venv-oldest/bin/python -m pip install -q torch==2.13.0
.venv-oldest/bin/python -m pip install -q -r requirements.txt "transformers==4.57.6"
HF_HUB_OFFLINE=1 .venv-oldest/bin/python -m pytest -n 2 tests -m "not notebooks and not browser"
HF_HUB_OFFLINE=1 .venv-oldest/bin/python -m pytest -n 2 --nbmake --nbmake-timeout=$CELL_TIMEOUT_S notebooks/en -m "not exclusive"
HF_HUB_OFFLINE=1 .venv-oldest/bin/python -m pytest --nbmake --nbmake-timeout=$CELL_TIMEOUT_S notebooks/en -m exclusive
