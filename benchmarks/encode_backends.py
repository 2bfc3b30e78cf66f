"""Embedding speed of each backend side by side in one run: texts/s and min cosine against PyTorch fp32.

Backends: torch (fp32), onnx, onnx-int8, openvino, openvino-int8 (``unimae.encoding.backends``), each at
batch 1 and batch 32, on short texts (about 12 tokens) and paragraphs (about 120 tokens) from the
Wikipedia sample. Graphs come from ``unimae export MODEL --format F`` folders given with ``--exports``, or
are built once into the cache. Each cell is the best of ``--repeats`` timed passes after a warm-up; the
speed-up is against torch in the same run, so the ratios hold on a busy machine better than the rates.

    OMP_NUM_THREADS=1 python benchmarks/encode_backends.py --model runs/default/model --threads 1
    python benchmarks/encode_backends.py --exports onnx-int8=exported/int8 ...   # use export folders
    python benchmarks/encode_backends.py --offline onnx-int8=exported/int8      # + `unimae eval` of it
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from unimae.data.wiki import wiki_sentences
from unimae.encoding.backends import BACKENDS
from unimae.encoding.encoder import Encoder


def default_model() -> str:
    return "runs/default/model" if Path("runs/default/model/config.json").exists() else "smollm2-135m"


def texts_of(tokenizer, n: int, tokens: int) -> list[str]:
    """``n`` Wikipedia texts of about ``tokens`` tokens (sentences joined into paragraphs when longer)."""
    out, current = [], []
    for s in wiki_sentences():
        current.append(s)
        length = len(tokenizer(" ".join(current), add_special_tokens=False).input_ids)
        if length >= tokens * 0.8:
            if length <= tokens * 1.3:
                out.append(" ".join(current))
            current = []
        if len(out) == n:
            return out
    raise RuntimeError(f"not enough {tokens}-token texts")


def rate(enc: Encoder, texts: list[str], batch: int, repeats: int) -> float:
    """Best texts/s of ``repeats`` passes (after one warm-up pass)."""
    enc.encode(texts[: max(batch, 4)], batch_size=batch)
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        enc.encode(texts, batch_size=batch)
        best = max(best, len(texts) / (time.perf_counter() - t))
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=default_model())
    p.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    p.add_argument("--exports", nargs="*", default=[], help="BACKEND=FOLDER: an export to use for BACKEND")
    p.add_argument("--n", type=int, default=64, help="texts per length")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="torch/ORT/OpenVINO threads (default: torch's)")
    p.add_argument("--offline", default=None, help="BACKEND=FOLDER: also run `unimae eval` of this export")
    p.add_argument("--json", default=None, help="write the table here too")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    folders = dict(e.split("=", 1) for e in args.exports)
    ref = Encoder.from_pretrained(args.model, device="cpu", backend="torch")
    sets = {"short": texts_of(ref.tokenizer, args.n, 12), "paragraph": texts_of(ref.tokenizer, args.n, 120)}
    ref_vecs = {k: ref.encode(v, normalize_embeddings=True) for k, v in sets.items()}
    rows = []
    for backend in args.backends:
        enc = Encoder.from_pretrained(folders.get(backend, args.model), device="cpu", backend=backend)
        cos = min(
            float((enc.encode(v, normalize_embeddings=True) * ref_vecs[k]).sum(1).min())
            for k, v in sets.items()
        )
        row = {"backend": backend, "min_cos": cos}
        for name, texts in sets.items():
            for batch in (1, 32):
                row[f"{name}@{batch}"] = rate(enc, texts if batch > 1 else texts[:16], batch, args.repeats)
        rows.append(row)
        print(json.dumps(row), flush=True)
        del enc
    print_table(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    if args.offline:
        run_offline(*args.offline.split("=", 1))


def print_table(rows: list[dict]) -> None:
    cells = ["short@1", "short@32", "paragraph@1", "paragraph@32"]
    base = rows[0] if rows and rows[0]["backend"] == "torch" else None
    print("\n| backend | " + " | ".join(f"{c} texts/s" for c in cells) + " | min cosine vs torch fp32 |")
    print("|---" * (len(cells) + 2) + "|")
    for r in rows:
        vals = [f"{r[c]:.1f}" + (f" ({r[c] / base[c]:.2f}x)" if base else "") for c in cells]
        print(f"| {r['backend']} | " + " | ".join(vals) + f" | {r['min_cos']:.5f} |")


def run_offline(backend: str, folder: str) -> None:
    """``unimae eval FOLDER --benchmark offline`` (the folder's own graph is used): about 13+ CPU minutes."""
    cmd = [
        "unimae",
        "eval",
        folder,
        "--benchmark",
        "offline",
        "--label",
        f"UniMAE ({backend})",
        "--threads",
        "1",
    ]
    print("running:", " ".join(cmd), flush=True)
    subprocess.run([sys.executable, "-m", "unimae.cli", *cmd[1:]], check=True)


if __name__ == "__main__":
    main()
