#!/usr/bin/env bash
# Install unimae as a wheel (not editable) into a fresh venv OUTSIDE the checkout and use it from there:
# what `pip install unimae` users get must carry every file the package needs (the shipped recipes, ...).
# The fresh venv takes unimae from the wheel and only its third-party dependencies from .venv (a path
# entry, so .venv's editable unimae is not seen), which spares a second multi-GB install of torch.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
.venv/bin/python -m pip wheel -q --no-deps --no-build-isolation -w "$work/dist" . >/dev/null
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q --no-deps "$work"/dist/unimae-*.whl
site=$("$work/venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
deps=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
echo "$deps" > "$site/zz_unimae_deps.pth"  # third-party packages only; sorted after the wheel's unimae
cd "$work"
"$work/venv/bin/python" - "$repo" <<'PY'
import sys, unimae
where = unimae.__file__
assert sys.argv[1] not in where and "/venv/" in where, f"unimae imported from {where}, not the wheel"
print("unimae from the wheel:", where)
from importlib.resources import files
for name in ("configs/default.yaml", "configs/paper.yaml", "configs/distill.yaml"):
    assert (files("unimae") / name).is_file(), f"{name} missing from the wheel"
assert (files("unimae.serving") / "static" / "index.html").is_file(), "the page's files are missing from the wheel"
PY
"$work/venv/bin/unimae" train --help >/dev/null
"$work/venv/bin/unimae" train --config default --print_config | grep -q "lr: 0.0002"
"$work/venv/bin/unimae" train --config paper --print_config | grep -q "output_dir: runs/paper"
"$work/venv/bin/unimae" train --config distill --print_config | grep -q "output_dir: runs/distill"
UNIMAE_CACHE="$work/cache" "$work/venv/bin/python" - "$repo/tests" <<'PY'
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])  # the tests' tiny-model builder (fixture code only)
from conftest import make_tiny_llama
make_tiny_llama(Path("tiny"))
PY
UNIMAE_CACHE="$work/cache" "$work/venv/bin/unimae" encode tiny "a tiny text" "another one" -o vecs.npy
"$work/venv/bin/python" -c "import numpy as np; v = np.load('vecs.npy'); assert v.shape == (2, 32), v.shape; print('wheel check: encode', v.shape)"
