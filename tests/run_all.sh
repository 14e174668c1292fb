#!/usr/bin/env bash
# Set up and run every test, from a fresh clone: the package, the suite checks, every notebook in both languages
# (nbmake), the notebook scripts, the assignments and the book (built, then opened in Chromium) on the newest
# transformers 5.x; then the package tests again on the oldest supported transformers (4.57.6). Offline at run
# time; installing needs the package registry.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

# torch first, so that requirements.txt's range is already satisfied and pulls no multi-GB CUDA build.
$PYTHON -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -r requirements.txt
# The book's browser test (tests/browser/test_book.py) drives Debian's Chromium and checks the Chinese glyphs
# against the installed CJK fonts.
if ! command -v chromium >/dev/null || [[ "$(fc-match -f '%{family}' 'Noto Sans CJK SC' 2>/dev/null)" != *"Noto Sans CJK"* ]]; then
  if [[ $(id -u) == 0 ]]; then apt-get update -q && apt-get install -y -q chromium fonts-noto-cjk; fi
fi
# The executed bilingual book (both languages, every notebook run once, cached); its tests run in the exclusive run.
bash book/build.sh
HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -n 2 --nbmake -m "not exclusive"
HF_HUB_OFFLINE=1 .venv/bin/python -m pytest --nbmake -m exclusive

# The instructor's extras (nbgrader), once the environment has been tested as a learner gets it; then nbgrader
# itself on the masters (the main run skipped that file; the import makes a missing install fail, not skip).
.venv/bin/python -m pip install -q -r requirements-course.txt
.venv/bin/python -c "import nbgrader"
HF_HUB_OFFLINE=1 .venv/bin/python -m pytest tests/test_nbgrader.py

$PYTHON -m venv .venv-oldest
.venv-oldest/bin/python -m pip install -q --upgrade pip
.venv-oldest/bin/python -m pip install -q torch==2.13.0
.venv-oldest/bin/python -m pip install -q -r requirements.txt "transformers==4.57.6"
HF_HUB_OFFLINE=1 .venv-oldest/bin/python -m pytest -n 2 tests -m "not notebooks"
