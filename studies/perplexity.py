"""Held-out perplexity alone: the half of the generation check that needs no BIG-bench file.

``unimae lm-eval`` measures held-out perplexity (wiki sentences) and multiple-choice accuracy (BIG-bench
tasks); since PyPI stopped serving the BIG-bench archive (docs/evaluation.md, "unimae data prepare") a new
machine cannot build the second. This measures the first exactly as ``unimae lm-eval`` does (the same
500 held-out sentences, seed 0, batch 16, ``lm_eval.perplexity``), so its figure compares with the
``perplexity`` of any ``lm_eval.json``, and writes it with its command beside each model's results:

    python studies/perplexity.py runs/scale/gemma3-270m/d1-s42/model \\
        --out results/scale/gemma3-270m/d1-s42/perplexity.json --label "gemma3-270m UniMAE + distill, seed 42"
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time

from unimae.evaluation.results import Perplexity
from unimae.io import atomic_write_json


def heldout_perplexity(model: str, n_sentences: int = 500, batch_size: int = 16) -> Perplexity:
    """``unimae lm-eval``'s perplexity of ``model`` (a folder, alias or hub id) on its held-out sentences."""
    from unimae.encoding.encoder import Encoder
    from unimae.evaluation.lm_eval import heldout_sample, perplexity

    enc = Encoder.from_pretrained(model)
    t0 = time.perf_counter()
    ppl = perplexity(enc.model, enc.tokenizer, heldout_sample(n_sentences), batch_size, desc="perplexity")
    ppl.seconds = time.perf_counter() - t0
    return ppl


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--out", required=True, help="the JSON file to write")
    p.add_argument("--label", default=None)
    p.add_argument("--n-sentences", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=16)
    args = p.parse_args(argv)
    ppl = heldout_perplexity(args.model, args.n_sentences, args.batch_size)
    record = {
        "label": args.label or args.model,
        "model": args.model,
        "settings": {"n_sentences": args.n_sentences, "batch_size": args.batch_size, "seed": 0},
        "perplexity": ppl.to_dict(),
        "command": shlex.join(
            ["python", "studies/perplexity.py", *(argv if argv is not None else sys.argv[1:])]
        ),
    }
    print(
        f"{record['label']}: perplexity {ppl.perplexity:.2f} over {ppl.tokens} tokens; wrote {atomic_write_json(args.out, record)}"
    )


if __name__ == "__main__":
    main()
