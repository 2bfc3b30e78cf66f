#!/usr/bin/env bash
# The large-model path on a CUDA machine, in under 10 minutes (docs/large-models.md):
#   1. the test suite (tests build tiny models on the CPU: conftest.py picks no device, so this checks the
#      install on that machine, not CUDA kernels);
#   2. the default recipe for 30 steps in fp32 and in bf16 on the GPU: median step time, tokens/s, peak
#      memory (torch.cuda.max_memory_allocated) and MFU against the card's bf16 peak;
#   3. step-1 losses of both against a 1-step CPU run of the same recipe (fp32 to 1e-3, bf16 to 5e-2);
#   4. a 2-task evaluation of a trained model (offline set: LeeSTS, PangLeePolarityClassification).
#
#   scripts/gpu_check.sh [OUT]            # default OUT: runs/gpu-check; figures in OUT/*/summary.json
#   DEVICE=cpu STEPS=3 SKIP_TESTS=1 EXTRA=batch_size=4 scripts/gpu_check.sh runs/gpu-check-dry   # dry run on a CPU
# Needs `unimae data prepare` done once (offline evaluation data) and the packaged default model.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${1:-runs/gpu-check}
DEVICE=${DEVICE:-cuda}
STEPS=${STEPS:-30}
EXTRA=${EXTRA:-}  # more key=value overrides for every training run, e.g. "batch_size=4"
mkdir -p "$OUT"
step() { printf '\n== %s (%ss elapsed)\n' "$1" "$SECONDS"; }

if [ "$DEVICE" = cuda ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  "$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name())"
  on_device=(--device auto)
else
  on_device=(--device cpu)
fi

if [ -z "${SKIP_TESTS:-}" ]; then
  step "test suite (not slow)"
  timeout 300 "$PY" -m pytest -q -x -m "not slow" -p no:cacheprovider tests | tail -3
fi

step "CPU reference: 1 step, fp32"
"$PY" benchmarks/gpu_step.py --device cpu --out "$OUT/cpu" steps=1 precision=fp32 save_every=0 $EXTRA

for precision in fp32 bf16; do
  step "$STEPS steps, $precision, on $DEVICE"
  "$PY" benchmarks/gpu_step.py "${on_device[@]}" --out "$OUT/$precision" steps="$STEPS" precision="$precision" save_every=0 $EXTRA
done

step "step-1 losses against the CPU run"
status=0
"$PY" benchmarks/gpu_step.py --compare "$OUT/cpu" "$OUT/fp32" --rtol 1e-3 || status=1
"$PY" benchmarks/gpu_step.py --compare "$OUT/cpu" "$OUT/bf16" --rtol 5e-2 || status=1

step "2-task evaluation of the bf16 run"
# gpu_step.py trains without exporting: export the run's checkpoint, then evaluate the exported model
"$PY" -m unimae.cli export "$OUT/bf16" --output "$OUT/bf16/model"
eval_device=$([ "$DEVICE" = cuda ] && echo cuda || echo cpu)
"$PY" -m unimae.cli eval "$OUT/bf16/model" --benchmark offline --tasks '[LeeSTS, PangLeePolarityClassification]' \
  --device "$eval_device" --output_dir "$OUT/eval" --label "gpu-check bf16"

step "done"
exit $status
