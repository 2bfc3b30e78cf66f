#!/usr/bin/env bash
# Issue 12's scale table: one model size, measured exactly as the default model is.
#
#   scripts/scale_study.sh MODEL [SEED] [STEP...]     # MODEL: smollm2-135m | gemma3-270m | qwen2.5-coder-0.5b
#
# STEP (default: all, in this order; each skipped once its result file exists, a killed training resumes
# from its checkpoint and a killed evaluation from its last finished task, so the study can be spread over
# several sessions and two lanes):
#   pooling-pcot pooling-prompteol    the two best training-free poolings at 135M, on the base model: pretended
#                                     chain of thought (Zhang et al. 2024; best on offline-dev and offline-test,
#                                     docs/method.md) and PromptEOL (RESULTS.md: offline 63.34)
#   pooling-tokenprepend              Token Prepending (Fu et al. 2024) on the base model, not run unless named
#   pooling-echo                      echo embeddings (offline 62.06 at 135M), not run unless named
#   base-lm                           held-out perplexity and choice accuracy of the base model
#   mntp                              MNTP with the paper recipe's optimizer (LoRA r16, lr 2e-4), + offline + lm-eval
#   unimae                            the paper recipe (MAR + MRC alone; `unimae train --config paper`, until now
#                                     also the default) with model=MODEL, + offline (through its encode_prompt,
#                                     PromptEOL's template) + lm-eval; with EOS_REFERENCE=1, plain EOS too
#   distill                           issue 25's finalist, `unimae train --config distill` (the default + distillation
#                                     from the base model's pretended-CoT embedding), + offline + lm-eval; run
#                                     folder d1-sSEED (the name it had on offline-v2-dev); not run unless named
# Training-free rows do not depend on SEED. Runs go to runs/scale/MODEL/NAME-sSEED, results to
# results/scale/MODEL/NAME[-sSEED]/{BENCHMARK,lm-eval}; `python studies/results.py` reads them (RESULTS.md).
# BENCHMARK (environment; default offline): the task set every evaluation runs, e.g. BENCHMARK=offline-v2-test
# re-scores the same trained runs on another set (training and lm-eval are skipped once their files exist).
# Each job uses one thread (OMP_NUM_THREADS=1); on 2 cores run two steps side by side, e.g.
#   scripts/scale_study.sh gemma3-270m 42 unimae &  scripts/scale_study.sh gemma3-270m 42 mntp pooling-prompteol &
# Nothing here is adapted per size: the default recipe's batch 16 x 64 tokens fits every size on a CPU
# (peak memory per size: docs/benchmarks.md), and the vocabulary head is chunked automatically (loss_chunk_size -1).
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:?usage: scripts/scale_study.sh MODEL [SEED] [STEP...]}
seed=${2:-42}
shift $(($# < 2 ? $# : 2))
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(pooling-pcot pooling-prompteol base-lm mntp unimae)
export OMP_NUM_THREADS=1
unimae=${UNIMAE:-.venv/bin/unimae}  # UNIMAE=echo prints the commands without running them
runs=runs/scale/$model
res=results/scale/$model
bench=${BENCHMARK:-offline}
pcot='After thinking step by step , this sentence : "{text}" means in one word:"'
lm_args=(--batch-size 16 --max-new-tokens 48 --n-examples 200 --n-sentences 500 --threads 1)

evaluate() {  # MODEL_OR_PATH OUT LABEL [eval args...]
  local m=$1 out=$2 label=$3
  shift 3
  [ -f "$out/summary.json" ] ||  # --resume: the tasks a killed evaluation finished are read back
    "$unimae" eval "$m" --benchmark "$bench" --threads 1 --label "$label" --output_dir "$out" --resume true "$@"
}
lm_eval() {  # MODEL_OR_PATH OUT LABEL
  [ -f "$2/lm_eval.json" ] || "$unimae" lm-eval "$1" --label "$3" --output_dir "$2" "${lm_args[@]}"
}
train() {  # RECIPE RUN_DIR key=value...
  local recipe=$1 run=$2
  shift 2
  [ -f "$run/model/unimae.json" ] && return
  local resume=()
  [ -d "$run/checkpoint" ] && resume=(--resume true)
  "$unimae" train --config "$recipe" model="$model" seed="$seed" output_dir="$run" "${resume[@]}" "$@"
}

for step in "${steps[@]}"; do
  case $step in
    pooling-prompteol | pooling-echo | pooling-tokenprepend)
      p=${step#pooling-}
      evaluate "$model" "$res/base-$p/$bench" "$model base ($p)" --pooling "$p" ;;
    pooling-pcot)
      evaluate "$model" "$res/base-pcot/$bench" "$model base (pretended CoT)" --pooling last --prompt "$pcot" ;;
    base-lm)
      lm_eval "$model" "$res/base/lm-eval" "$model base" ;;
    mntp)
      train paper "$runs/mntp-s$seed" objective=mntp encode_prompt=null
      evaluate "$runs/mntp-s$seed/model" "$res/mntp-s$seed/$bench" "$model MNTP (LoRA), seed $seed"
      lm_eval "$runs/mntp-s$seed/model" "$res/mntp-s$seed/lm-eval" "$model MNTP (LoRA), seed $seed" ;;
    unimae)
      train paper "$runs/unimae-s$seed"
      evaluate "$runs/unimae-s$seed/model" "$res/unimae-s$seed/$bench" "$model UniMAE default, seed $seed"
      [ "${EOS_REFERENCE:-0}" = 1 ] && evaluate "$runs/unimae-s$seed/model" "$res/unimae-s$seed-eos/$bench" \
        "$model UniMAE default, plain EOS, seed $seed" --prompt '{text}'
      lm_eval "$runs/unimae-s$seed/model" "$res/unimae-s$seed/lm-eval" "$model UniMAE default, seed $seed" ;;
    distill)
      train distill "$runs/d1-s$seed"
      evaluate "$runs/d1-s$seed/model" "$res/d1-s$seed/$bench" "$model UniMAE + distill (pretended CoT teacher), seed $seed"
      lm_eval "$runs/d1-s$seed/model" "$res/d1-s$seed/lm-eval" "$model UniMAE + distill (pretended CoT teacher), seed $seed" ;;
    *)
      echo "unknown step $step (pooling-pcot pooling-prompteol pooling-tokenprepend pooling-echo base-lm mntp unimae distill)" >&2
      exit 2 ;;
  esac
done
