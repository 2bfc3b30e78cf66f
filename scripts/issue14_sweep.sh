#!/usr/bin/env bash
# Issue 14's sweep: train one point of the grid, then evaluate it on offline-dev, with plain EOS and
# through the PromptEOL template (a run trained with the template is read through it only).
#
#   scripts/issue14_sweep.sh NAME SEED key=value...      # one point; finished steps are skipped
#
# e.g. scripts/issue14_sweep.sh plain-mrc0.7-mar0.2 42 mrc_mask_ratio=0.7
#      scripts/issue14_sweep.sh prompted-mrc0.5-mar0.2 42 'prompt=This sentence : "{text}" means in one word:"'
# Runs go to runs/issue14/NAME-sSEED, results to results/issue14/NAME-sSEED/{eos,template}/offline-dev.
# Each job uses one thread (OMP_NUM_THREADS=1); on 2 cores run two points side by side.
# BENCHMARK=offline-test evaluates a finished point on the test part instead (once per finalist), read
# through the template (or its trained prompt) only: plain EOS, far behind on dev, is not a finalist.
set -euo pipefail
cd "$(dirname "$0")/.."
name=$1; seed=$2; shift 2
bench=${BENCHMARK:-offline-dev}
run=runs/issue14/$name-s$seed
res=results/issue14/$name-s$seed
template='This sentence : "{text}" means in one word:"'
export OMP_NUM_THREADS=1
unimae=.venv/bin/unimae
if [ ! -f "$run/model/unimae.json" ]; then
  "$unimae" train --config default output_dir="$run" seed="$seed" "$@"
fi
# trained with a prompt? (config.yaml's prompt; the export's unimae.json also records encode_prompt)
prompted=$(.venv/bin/python -c "import yaml,sys; print(bool(yaml.safe_load(open(sys.argv[1])).get('prompt')))" "$run/config.yaml")
if [ "$prompted" = False ] && [ "$bench" != offline-test ] && [ ! -f "$res/eos/$bench/summary.json" ]; then
  # '{text}': the text alone, whatever prompt the export records (the default recipe sets encode_prompt)
  "$unimae" eval "$run/model" --benchmark "$bench" --threads 1 --prompt '{text}' --label "$name s$seed (EOS)" \
    --output_dir "$res/eos/$bench"
fi
if [ ! -f "$res/template/$bench/summary.json" ]; then
  if [ "$prompted" = True ]; then
    "$unimae" eval "$run/model" --benchmark "$bench" --threads 1 --label "$name s$seed (trained prompt)" \
      --output_dir "$res/template/$bench"
  else
    "$unimae" eval "$run/model" --benchmark "$bench" --threads 1 --prompt "$template" \
      --label "$name s$seed (PromptEOL template)" --output_dir "$res/template/$bench"
  fi
fi
