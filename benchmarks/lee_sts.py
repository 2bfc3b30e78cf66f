"""Spearman correlation on the Lee et al. (2005) STS pairs, for several models and poolings.

python benchmarks/lee_sts.py                                  # base model: mean, last, eos, echo, prompteol
python benchmarks/lee_sts.py --models smollm2-135m runs/default/model --poolings mean last eos
"""

from __future__ import annotations

import argparse
import json

from unimae import Encoder
from unimae.evaluation.lee import evaluate_lee


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["smollm2-135m"])
    p.add_argument("--poolings", nargs="+", default=["mean", "last", "eos", "echo", "prompteol"])
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--json", help="also write the results to this JSON file")
    args = p.parse_args()
    rows = []
    for model in args.models:
        enc = Encoder.from_pretrained(model, max_length=args.max_length)
        for pooling in args.poolings:
            enc.pooling = pooling
            rho = evaluate_lee(lambda texts, enc=enc: enc.encode(texts, batch_size=8))
            rows.append({"model": model, "pooling": pooling, "spearman": rho})
            print(f"{model:40s} {pooling:10s} Spearman {rho:.4f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
