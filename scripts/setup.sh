#!/usr/bin/env bash
# Set up reenact in ./.venv. Usage: bash scripts/setup.sh [--dev]
#   --dev        also install the test tools (pytest, hypothesis)
#   TORCH_SPEC   which torch to install first (default torch==2.13.0, the CPU build that
#                lies on this project's machines; on an NVIDIA machine use e.g. "torch==2.9.1"
#                from the CUDA index, see the README)
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(not ((3, 10) <= sys.version_info[:2] <= (3, 12)))'; then
  echo "reenact needs Python 3.10 to 3.12 (mediapipe 0.10.21 has no wheels beyond); found: $("$PY" --version 2>&1)" >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip_install() { .venv/bin/python -m pip install --quiet --disable-pip-version-check "$@"; }

# torch first: installed on its own, pip never swaps in a multi-gigabyte CUDA build later.
# shellcheck disable=SC2086  # TORCH_SPEC may carry pip options, e.g. --index-url
pip_install ${TORCH_SPEC:-torch==2.13.0}
if [ "${1:-}" = "--dev" ]; then pip_install -e ".[dev]"; else pip_install -e .; fi

# PortAudio is a system library that sounddevice loads at run time (audio sync).
if ! ldconfig -p 2>/dev/null | grep -q 'libportaudio\.so\.2'; then
  echo "note: libportaudio2 is missing; audio sync will be unavailable. Install it with: sudo apt-get install libportaudio2" >&2
fi
echo "reenact is set up in .venv: run .venv/bin/reenact --help"
