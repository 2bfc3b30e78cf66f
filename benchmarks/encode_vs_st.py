"""unimae ``encode`` against sentence-transformers on the exported folder: same texts, same machine, same run.

Exports the model with ``export_sentence_transformers`` into a temporary folder, loads it with the real
``SentenceTransformer``, then times both encoders alternately (``--repeats`` rounds each, median) on the
same texts and batch size. Also prints the smallest cosine between the two, with unimae padding right and
left (the export's claim: >= 0.9999 on every text).

    python benchmarks/encode_vs_st.py                        # runs/default/model (else smollm2-135m), 512 texts
    python benchmarks/encode_vs_st.py --model smollm2-135m --n 1024 --batch-size 64
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from unimae.data.wiki import wiki_sentences
from unimae.encoding.encoder import Encoder
from unimae.export import export_sentence_transformers


def default_model() -> str:
    return "runs/default/model" if Path("runs/default/model/config.json").exists() else "smollm2-135m"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=default_model())
    p.add_argument("--n", type=int, default=512, help="texts (held-out Wikipedia sentences)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()

    from sentence_transformers import SentenceTransformer

    texts = wiki_sentences("heldout")[: args.n]
    enc = Encoder.from_pretrained(args.model, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        folder = export_sentence_transformers(enc, Path(tmp) / "st")
        export_s = time.perf_counter() - t0
        st = SentenceTransformer(str(folder), device="cpu")

        def ours():
            return enc.encode(
                texts, batch_size=args.batch_size, normalize_embeddings=True, show_progress_bar=False
            )

        def theirs():
            return st.encode(texts, batch_size=args.batch_size, show_progress_bar=False)

        enc.encode(texts[:8]), st.encode(texts[:8])  # warm-up
        times = {"unimae": [], "sentence-transformers": []}
        out = {}
        for _ in range(args.repeats):  # alternate, so both see the same machine state
            for name, fn in (("unimae", ours), ("sentence-transformers", theirs)):
                t0 = time.perf_counter()
                out[name] = fn()
                times[name].append(time.perf_counter() - t0)
        cos_right = float((out["unimae"] * out["sentence-transformers"]).sum(1).min())
        enc.padding_side = "left"
        cos_left = float((ours() * out["sentence-transformers"]).sum(1).min())
        enc.padding_side = "right"

    n_tokens = sum(len(enc.tokenizer(t).input_ids) + 1 for t in texts)
    print(
        f"model {args.model} ({enc.dim}-d), {len(texts)} texts, {n_tokens} tokens (mean {n_tokens / len(texts):.1f}), "
        f"batch {args.batch_size}, {torch.get_num_threads()} torch threads, {args.repeats} rounds; "
        f"export took {export_s:.1f} s"
    )
    med = {k: statistics.median(v) for k, v in times.items()}
    for name, t in med.items():
        print(
            f"  {name:22s} {len(texts) / t:8.1f} texts/s   (median {t:.2f} s; all {', '.join(f'{x:.2f}' for x in times[name])})"
        )
    print(
        f"  ratio unimae / sentence-transformers throughput: {med['sentence-transformers'] / med['unimae']:.2f}x"
    )
    print(
        f"  min cosine unimae vs sentence-transformers: {cos_right:.6f} (unimae right padding), "
        f"{cos_left:.6f} (unimae left padding)"
    )
    assert np.isfinite([cos_right, cos_left]).all()


if __name__ == "__main__":
    main()
