#!/usr/bin/env bash
# An unimae ONNX / OpenVINO export loads in sentence-transformers (backend="onnx" / "openvino") WITHOUT
# unimae, and embeds as unimae does (docs/backends.md, "sentence-transformers").
#
# The optimum packages that sentence-transformers' backends need pin an older transformers than this project
# (optimum-onnx 0.1.0: transformers < 4.58), so the check runs in a side venv, runs/st-venv, that never
# installs unimae: torch (the CPU wheel, first, so nothing pulls a CUDA build), then the pinned versions below.
#
#   scripts/st_backend_check.sh tiny [OUT]     # tiny random Llama -> onnx, onnx-int8, openvino, openvino-int8
#                                              # exports in OUT (default runs/st-check), each checked
#   scripts/st_backend_check.sh check FOLDER BACKEND REF.npy TEXTS.txt [MIN_COSINE]
#       FOLDER: an unimae export; BACKEND: onnx or openvino (sentence-transformers' name); REF.npy: unimae's
#       vectors of TEXTS.txt (one text a line); MIN_COSINE default: 0.99 for an int8 graph, else 0.9999
#   scripts/st_backend_check.sh setup          # only build the side venv
#
# Exits non-zero when a minimum cosine is below its threshold, or when anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} TQDM_DISABLE=${TQDM_DISABLE:-1}
PY=${PY:-.venv/bin/python}              # the project venv (unimae): makes the fixture and the reference
BASE_PYTHON=${BASE_PYTHON:-python3}     # creates the side venv
VENV=${ST_VENV:-runs/st-venv}
SIDE=$VENV/bin/python
PINS=(
  "transformers==4.57.6"                # optimum-onnx 0.1.0 needs transformers < 4.58
  "sentence-transformers[onnx,openvino]==5.7.0"
  "optimum==2.1.0"                      # optimum-onnx 0.1.0 needs optimum ~= 2.1.0
  "optimum-onnx[onnxruntime]==0.1.0"
  "optimum-intel[openvino]==1.27.0"     # 2.x needs optimum ~= 2.3.0, which optimum-onnx 0.1.0 refuses
)
# This machine's pip finds the CPU wheel of torch 2.13.0 on local disk; where it does not, an unpinned index
# may give a CUDA build: set TORCH_PIN (and PIP_* variables) to pick the CPU wheel there.
TORCH_PIN=${TORCH_PIN:-torch==2.13.0}

setup() {
  local stamp=$VENV/.st-pins want
  want="$TORCH_PIN ${PINS[*]}"
  if [ -x "$SIDE" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  echo "== building the side venv $VENV"
  [ -x "$SIDE" ] || "$BASE_PYTHON" -m venv "$VENV"
  "$SIDE" -m pip install -q "$TORCH_PIN"
  "$SIDE" -m pip install -q "${PINS[@]}"
  "$SIDE" -m pip check
  printf '%s' "$want" > "$stamp"
}

check() {  # FOLDER BACKEND REF TEXTS [MIN]
  setup
  # Run from outside the repository: nothing of it (src/unimae) is on the side venv's path.
  local side folder ref texts
  side=$(realpath -s "$SIDE") folder=$(realpath "$1") ref=$(realpath "$3") texts=$(realpath "$4")
  (cd "$VENV" && "$side" - "$folder" "$2" "$ref" "$texts" "${5:-}") <<'EOF'
import importlib.util
import json
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np

assert importlib.util.find_spec("unimae") is None, "unimae is importable in the side venv"
try:
    import unimae  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("unimae imported in the side venv")

from sentence_transformers import SentenceTransformer

folder, backend, ref_file, texts_file, minimum = sys.argv[1:6]
sub = {"onnx": "onnx", "openvino": "openvino"}[backend]
made = json.loads((Path(folder) / sub / "unimae_backend.json").read_text())["backend"]
minimum = float(minimum) if minimum else (0.99 if made.endswith("-int8") else 0.9999)
texts = Path(texts_file).read_text(encoding="utf-8").splitlines()
ref = np.load(ref_file)
assert ref.shape[0] == len(texts), (ref.shape, len(texts))
kwargs = {"ov_config": {"INFERENCE_PRECISION_HINT": "f32"}} if backend == "openvino" else {}
model = SentenceTransformer(folder, backend=backend, device="cpu", model_kwargs=kwargs)
body = type(model[0].auto_model).__name__
# sentence-transformers' own tokenization: right padding, every text ends in the EOS (lasttoken pools it)
tokenizer = model.tokenizer
features = (model.preprocess if hasattr(model, "preprocess") else model.tokenize)(texts)
last = features["input_ids"][np.arange(len(texts)), features["attention_mask"].sum(1).numpy() - 1]
assert tokenizer.padding_side == "right", tokenizer.padding_side
assert (last == tokenizer.eos_token_id).all(), f"texts not ending in EOS {tokenizer.eos_token_id}: {last}"
vecs = model.encode(texts, batch_size=4, convert_to_numpy=True)
assert "unimae" not in sys.modules, "something imported unimae"
assert np.isfinite(vecs).all(), "non-finite vectors"
unit = lambda a: a.astype(np.float64) / np.linalg.norm(a.astype(np.float64), axis=-1, keepdims=True)  # noqa: E731
cos = (unit(vecs) * unit(ref)).sum(-1)
gap = np.abs(unit(vecs) - unit(ref)).max()
versions = ", ".join(
    f"{p} {version(p)}"
    for p in ("sentence-transformers", "transformers", "optimum", "optimum-onnx", "optimum-intel",
              "onnxruntime", "openvino", "torch")
)
ok = cos.min() >= minimum
print(
    f"{'OK  ' if ok else 'FAIL'} {made:13s} backend={backend:8s} body={body} n={len(texts)} "
    f"min cosine {cos.min():.8f} (1 - min = {1 - cos.min():.1e}; >= {minimum}), max |diff| {gap:.1e}, "
    f"tokens {int(features['attention_mask'].sum(1).min())}..{int(features['attention_mask'].sum(1).max())}"
)
print(f"     side venv: {versions}")
sys.exit(0 if ok else 1)
EOF
}

tiny() {  # [OUT]
  local out=${1:-runs/st-check}
  setup
  rm -rf "$out"
  mkdir -p "$out"
  echo "== tiny random Llama, texts and exports in $out (project venv)"
  "$PY" - "$out" <<'EOF'
import sys
from pathlib import Path

sys.path.insert(0, "tests")
from conftest import make_tiny_llama, random_sentences  # noqa: E402  the tests' tiny models

out = Path(sys.argv[1])
make_tiny_llama(out / "model")
texts = random_sentences(16, seed=7, lo=1, hi=60) + ["dog", "the cat sat ."]  # 1 word to ~60 words
(out / "texts.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
EOF
  local fmt
  for fmt in onnx onnx-int8 openvino openvino-int8; do
    .venv/bin/unimae export "$out/model" --format "$fmt" -o "$out/$fmt" >/dev/null
  done
  "$PY" - "$out" <<'EOF'
import sys
from pathlib import Path

import numpy as np

from unimae.encoding.encoder import Encoder

out = Path(sys.argv[1])
texts = (out / "texts.txt").read_text(encoding="utf-8").splitlines()
for fmt in ("onnx", "onnx-int8", "openvino", "openvino-int8"):
    # the reference: PyTorch fp32 on the exported folder's own weights and tokenizer (not its graph)
    enc = Encoder.from_pretrained(str(out / fmt), device="cpu", backend="torch")
    vecs = enc.encode(texts, batch_size=4, normalize_embeddings=True, show_progress_bar=False)
    np.save(out / f"{fmt}.npy", vecs)
    lengths = [len(it.ids) for it in enc.tokenize(texts)]
print(f"{len(texts)} texts, {min(lengths)} to {max(lengths)} tokens")
EOF
  local failed=0
  echo "== sentence-transformers in the side venv ($VENV, no unimae)"
  for fmt in onnx onnx-int8 openvino openvino-int8; do
    check "$out/$fmt" "${fmt%-int8}" "$out/$fmt.npy" "$out/texts.txt" || failed=1
  done
  return $failed
}

case "${1:-}" in
  setup) setup ;;
  check) shift; [ $# -ge 4 ] || { echo "usage: $0 check FOLDER BACKEND REF.npy TEXTS.txt [MIN]" >&2; exit 2; }
         check "$@" ;;
  tiny) shift; tiny "$@" ;;
  *) sed -n '2,16p' "$0" >&2; exit 2 ;;
esac
