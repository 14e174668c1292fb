#!/usr/bin/env bash
# The GPU checks, from a fresh clone, on a machine with at least one CUDA GPU (a few minutes): install, run the gpu
# tests, the FSDP demo (FSDP1 and FSDP2 with one process, and with one per GPU where there are several) and notebook
# 10 in both languages, and write what was measured to docs/gpu.md. Offline at run time; installing needs the package
# registry, unless everything is installed already (or PIP_NO_INDEX=1 PIP_FIND_LINKS=DIR point pip at wheels).
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
VENV=${VLA_GPU_VENV:-${TMPDIR:-/tmp}/vla-backbone-gpu-venv}

if "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    # A CUDA build of torch is installed already (Colab, cloud images): the environment sees and keeps it.
    "$PYTHON" -m venv --system-site-packages "$VENV"
else
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    # The registry's default torch wheel for Linux is a CUDA build.
    "$VENV/bin/python" -m pip install -q torch
fi
"$VENV/bin/python" -m pip install -q -r requirements.txt
"$VENV/bin/python" -c "import sys, torch; sys.exit(0) if torch.cuda.is_available() else sys.exit('torch sees no CUDA GPU here: check nvidia-smi and the driver')"
export PATH="$VENV/bin:$PATH"
HF_HUB_OFFLINE=1 "$VENV/bin/python" tests/gpu/report.py
