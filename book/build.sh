#!/usr/bin/env bash
# Build the executed bilingual book into book/_build/html/ (English in en/, Chinese in zh/).
#   bash book/build.sh                 # uses .venv/bin/python when there is one, else python3 (or set PYTHON)
# Notebooks run offline. A static page has no kernel to drive a widget, so book/execute.py shows each widget by the
# outputs it shows when the notebook runs. Execution is cached in book/_build/cache/, so a rebuild after a prose
# edit only re-renders. Any cell error, Sphinx warning, missing twin or broken link fails the build (docs/book.md
# lists every rule).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
# Headless execution takes explore()'s plain path (the first option's output): after widget messages nbclient can wait
# forever on an idle kernel (jupyter/nbclient#312). Widgets that notebooks display directly are still shown by their outputs.
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false VLA_BACKBONE_WIDGETS=0
exec "$PYTHON" -m book.build "$@"
