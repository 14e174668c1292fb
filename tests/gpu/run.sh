#!/usr/bin/env bash
# The GPU checks, from a fresh clone, on a machine with at least one CUDA GPU (a few minutes): install, run the gpu
# tests, the FSDP demo (FSDP1 and FSDP2 with one process, and with one per GPU where there are several) and notebook
# 10 in both languages, and write what was measured to docs/gpu.md. Offline at run time. Installing needs the package
# registry, or wheels gathered beforehand on a machine that has it:
#
#     bash tests/gpu/wheels.sh                                          # there: writes .whl/
#     PIP_NO_INDEX=1 PIP_FIND_LINKS="$PWD/.whl" bash tests/gpu/run.sh   # on the GPU machine
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}

if "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    # A CUDA build of torch is installed already (Colab, cloud images): use that environment and add only what it
    # lacks. A virtual environment would not do: made from a Python that is itself a venv's (as on many images),
    # `--system-site-packages` shows the base interpreter's packages, not that venv's torch.
    RUN_PYTHON=$PYTHON
elif ! nvidia-smi -L >/dev/null 2>&1; then
    # Stop before installing anything (the branch below downloads a multi-GB CUDA torch): no GPU to measure here.
    echo "tests/gpu/run.sh measures the GPU path, and this machine shows no NVIDIA GPU (neither torch nor" \
         "nvidia-smi finds one). On a CPU, bash tests/run_all.sh runs every test (the gpu ones skip themselves)." >&2
    exit 1
else
    VENV=${VLA_GPU_VENV:-${TMPDIR:-/tmp}/vla-backbone-gpu-venv}
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    # The registry's default torch wheel for Linux is a CUDA build.
    "$VENV/bin/python" -m pip install -q torch
    RUN_PYTHON=$VENV/bin/python
    export PATH="$VENV/bin:$PATH"
fi
"$RUN_PYTHON" -m pip install -q -r tests/gpu/requirements.txt
"$RUN_PYTHON" -c "import sys, torch; sys.exit(0) if torch.cuda.is_available() else sys.exit('torch sees no CUDA GPU here: check nvidia-smi and the driver')"
# The package runs from this checkout: the gpu tests, the torchrun ranks and the notebook kernels all import it.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
HF_HUB_OFFLINE=1 "$RUN_PYTHON" tests/gpu/report.py
