"""OpenVINO int8 run-time settings side by side: inference precision x activation-quantization group size.

The ``openvino-int8`` graph holds int8 weights; at run time OpenVINO's CPU plugin quantizes activations per
group of ``DYNAMIC_QUANTIZATION_GROUP_SIZE`` channels (0: off) and runs the rest at
``INFERENCE_PRECISION_HINT``. This prints texts/s and the min cosine against PyTorch fp32 for each pair, in
one run, so the choice in ``unimae.encoding.backends.openvino_config`` can be checked on another CPU.

    unimae export runs/default/model --format openvino-int8 -o exported/default-openvino-int8
    OMP_NUM_THREADS=1 python benchmarks/openvino_settings.py --export exported/default-openvino-int8 \
        --model runs/default/model --threads 1
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from unimae.data.wiki import wiki_sentences
from unimae.encoding.backends import graph_file, openvino_config
from unimae.encoding.encoder import Encoder


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--export", required=True, help="an `unimae export --format openvino-int8` folder")
    p.add_argument("--model", required=True, help="the PyTorch model it was exported from (the reference)")
    p.add_argument("--words", type=int, default=30, help="words per text (RAG chunks are 30)")
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--groups", type=int, nargs="+", default=[0, 32, 128])
    p.add_argument("--precisions", nargs="+", default=["f32", "bf16"])
    args = p.parse_args()
    import openvino as ov

    core = ov.Core()
    if args.threads:
        torch.set_num_threads(args.threads)
    words = " ".join(wiki_sentences("heldout")).split()
    texts = [" ".join(words[i * args.words : (i + 1) * args.words]) for i in range(args.n)]
    ref = Encoder.from_pretrained(args.model, device="cpu").encode(
        texts, batch_size=args.batch_size, normalize_embeddings=True
    )
    enc = Encoder.from_pretrained(args.export, device="cpu")
    if enc.backend != "openvino-int8":
        raise SystemExit(f"{args.export} holds a {enc.backend} graph, not openvino-int8")
    print(f"{args.n} texts of {args.words} words, batch {args.batch_size}, best of {args.repeats} passes")
    for precision in args.precisions:
        for group in args.groups:
            config = openvino_config(core, enc.backend, args.threads)  # unimae's, with this pair instead
            config.update(INFERENCE_PRECISION_HINT=precision, DYNAMIC_QUANTIZATION_GROUP_SIZE=str(group))
            enc.runtime.compiled = core.compile_model(
                str(graph_file(args.export, enc.backend)), "CPU", config
            )
            enc.encode(texts, batch_size=args.batch_size)  # warm-up: kernels for these shapes
            best, vecs = float("inf"), None
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                vecs = enc.encode(texts, batch_size=args.batch_size, normalize_embeddings=True)
                best = min(best, time.perf_counter() - t0)
            cos = float((np.asarray(vecs) * np.asarray(ref)).sum(1).min())
            print(
                f"precision {precision:4s}  group {group:4d}: {args.n / best:6.1f} texts/s   min cosine {cos:.5f}"
            )


if __name__ == "__main__":
    main()
