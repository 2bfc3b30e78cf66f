"""How a server should split one collected batch: texts/s of ``Encoder.encode_tokenized`` by ``max_tokens``.

A server's batch is one mix of whatever short texts arrived together (here: mixes of 32 held-out Wikipedia
sentences of at most 20 words, 10-40 tokens). Padded to the longest, such a mix wastes much of its compute;
``max_tokens`` cuts it into length-sorted passes of at most that many padded tokens. This prints texts/s
per budget, and at batch 1 (what one request per forward pass gets), in one run, in-process (no HTTP).
``ServerConfig.batch_max_tokens`` is chosen from this; ``benchmarks/serve_throughput.py`` then measures
the server itself.

    python benchmarks/batch_tokens.py                        # smollm2-135m, torch's default threads
    python benchmarks/batch_tokens.py --threads 1 --budgets 128 256 512
"""

from __future__ import annotations

import argparse
import time

import torch

from unimae.data.wiki import wiki_sentences
from unimae.encoding.encoder import Encoder


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--backend", default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--mixes", type=int, default=8, help="mixes of --batch-size texts each")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--budgets", type=int, nargs="+", default=[0, 768, 512, 384, 256, 192, 128, 64])
    p.add_argument("--passes", type=int, default=3, help="best of this many timed passes per setting")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    enc = Encoder.from_pretrained(args.model, backend=args.backend)
    texts = [t for t in wiki_sentences("heldout") if len(t.split()) <= 20][: args.mixes * args.batch_size]
    items = enc.tokenize(texts)
    mixes = [items[i : i + args.batch_size] for i in range(0, len(items), args.batch_size)]
    lengths = [len(it.ids) for it in items]

    def rate(batch_size: int, budget: int | None, mixes=mixes) -> float:
        best = 0.0
        for _ in range(args.passes):
            t0 = time.perf_counter()
            for m in mixes:
                enc.encode_tokenized(m, batch_size=batch_size, max_tokens=budget)
            best = max(best, sum(map(len, mixes)) / (time.perf_counter() - t0))
        return best

    rate(args.batch_size, None, mixes[:1])  # warm-up
    print(
        f"model {args.model} ({enc.backend}), {torch.get_num_threads()} threads; {len(mixes)} mixes of "
        f"{args.batch_size} texts, {min(lengths)}-{max(lengths)} tokens (mean {sum(lengths) / len(lengths):.1f})"
    )
    one = rate(1, None, [m[:8] for m in mixes])
    print(f"batch 1 (one text a pass)          : {one:6.1f} texts/s")
    for b in args.budgets:
        r = rate(args.batch_size, b or None)
        name = "one pass (no budget)" if not b else f"max_tokens {b}"
        print(f"batch {args.batch_size}, {name:27s}: {r:6.1f} texts/s  ({r / one:.2f}x batch 1)")


if __name__ == "__main__":
    main()
