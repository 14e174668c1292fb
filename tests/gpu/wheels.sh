#!/usr/bin/env bash
# Gather, on a machine with the package registry, the wheels that tests/gpu/run.sh needs on a GPU machine without one:
# everything in tests/gpu/requirements.txt and its dependencies, minus what that machine's image already holds.
#
#     bash tests/gpu/wheels.sh [DEST] [PRESENT]     # default: .whl and tests/gpu/cuda-image-packages.txt
#
# Then, on the GPU machine:  PIP_NO_INDEX=1 PIP_FIND_LINKS="$PWD/.whl" bash tests/gpu/run.sh
# TARGET_PYTHON (default 3.12) is the GPU machine's Python version; the wheels are for Linux x86-64.
set -euo pipefail
cd "$(dirname "$0")/../.."
DEST=${1:-.whl}
PRESENT=${2:-tests/gpu/cuda-image-packages.txt}
TARGET_PYTHON=${TARGET_PYTHON:-3.12}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$DEST"

python3 -m venv "$WORK/tools"
"$WORK/tools/bin/python" -m pip install -q wheel

# fire and fontmeta (mplfonts' dependencies) publish source distributions only, and a machine without the registry
# cannot fetch the setuptools that building them needs: build them here, as pure-Python wheels.
SOURCE_ONLY=(fire fontmeta)
"$WORK/tools/bin/python" -m pip wheel -q --no-deps -w "$WORK/wheels" "${SOURCE_ONLY[@]}"
# Keep what the image lacks. Wheel names spell projects with underscores; the list may use hyphens or capitals.
normalise() { tr '[:upper:]_.' '[:lower:]--'; }
grep -v '^#' "$PRESENT" | normalise | sort -u > "$WORK/present"
# Ask only for the requirements the image lacks, so that no newer release of a package it holds drags in new
# dependencies. The rest comes as wheels for the target; the built ones stand in for their sdists while pip resolves.
while read -r requirement; do
    project=$(echo "$requirement" | sed 's/[<>=!~ ].*//' | normalise)
    grep -qx "$project" "$WORK/present" || echo "$requirement"
done < <(grep -v -e '^#' -e '^$' tests/gpu/requirements.txt) > "$WORK/requirements.txt"
"$WORK/tools/bin/python" -m pip download -q --only-binary=:all: --find-links "$WORK/wheels" \
    --python-version "$TARGET_PYTHON" --implementation cp --platform manylinux_2_28_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    -d "$WORK/wheels" -r "$WORK/requirements.txt"

# Small dependencies whose version in the image is unknown (the list names no versions) come along anyway: pip takes
# them from .whl only if the image's copy is too old for a new wheel's lower bound (ipython 9 asks for psutil>=7).
ALWAYS=" psutil typing-extensions packaging "
for wheel in "$WORK"/wheels/*.whl; do
    project=$(basename "$wheel" | cut -d- -f1 | normalise)
    if ! grep -qx "$project" "$WORK/present" || [[ "$ALWAYS" == *" $project "* ]]; then
        cp "$wheel" "$DEST/"
    fi
done

# mplfonts ships six CJK fonts (85 MB); the notebooks use one, Noto Sans CJK SC (vla_backbone.notebook.cjk_font_path).
# A device machine takes at most 64 MiB with the repository, so the copy for it keeps that one font; `wheel pack`
# rewrites the RECORD to match.
for wheel in "$DEST"/mplfonts-*.whl; do
    [ -e "$wheel" ] || continue
    "$WORK/tools/bin/python" -m wheel unpack -d "$WORK/unpacked" "$wheel"
    find "$WORK"/unpacked/*/mplfonts/fonts -type f ! -name NotoSansCJKsc-Regular.otf -delete
    rm "$wheel"
    "$WORK/tools/bin/python" -m wheel pack -d "$DEST" "$WORK"/unpacked/*
done
du -sh "$DEST"
ls "$DEST"
