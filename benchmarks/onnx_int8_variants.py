"""Ways to quantize the ONNX graph to int8, side by side: min/mean cosine against PyTorch fp32 and texts/s.

Every variant is built from the same fp32 graph (``unimae.encoding.backend_build.export_onnx``) and run in
ONNX Runtime on the same texts: 64 short Wikipedia texts (about 12 tokens) at batch 32 and 16 of them at
batch 1, 32 paragraphs (about 120 tokens) at batch 32, and the export check's built-in sentences
(``unimae.encoding.backend_build.PARITY_TEXTS``, alone and in one batch). Speed: rounds that time torch and every
variant in turn (each loaded afresh), best of ``--repeats`` passes each; ratios are against torch.

Variants (``--variants``):
  dynamic            ONNX Runtime ``quantize_dynamic``: int8 MatMul weights per channel, activations per
                     tensor at run time (the old ``onnx-int8``)
  dynamic-fp32-down  the same with the 30 ``mlp.down_proj`` MatMuls left in fp32
  smoothquant-A      SmoothQuant with alpha A (``unimae.encoding.smoothquant``: activation outliers moved
                     into the weights, folded into the norms, ``up_proj`` and ``v_proj``; calibrated on 128
                     held-out sentences, as the export does), then ``dynamic``
  nbits8-B           ``MatMulNBitsQuantizer``: int8 weights in blocks of B along the input (symmetric),
                     ``accuracy_level`` 4: activations quantized per row and block of B at run time and
                     int8 dot products (B in 16, 32, 64, 128)
  nbits8-32-fp32     the same weights with fp32 compute (``accuracy_level`` 0)
  hybrid             ``dynamic`` for q/k/o/gate projections, ``nbits8-32`` for v/up/down
  [smoothquant-A-]mix-P+P   ``nbits8-32`` for the projections named (``down``, ``up``, ``v``...), ``dynamic``
                     for the others, on the fp32 or the SmoothQuant graph.
                     ``smoothquant-0.8-mix-down+v`` is what ``unimae export --format onnx-int8`` builds for
                     Llama-style models, ``nbits8-32`` what it falls back to (``backend_build``)

    OMP_NUM_THREADS=1 MALLOC_MMAP_THRESHOLD_=1048576 nice -n 5 python benchmarks/onnx_int8_variants.py \
        --model smollm2-135m --threads 1
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from copy import deepcopy
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from encode_backends import texts_of  # noqa: E402

from unimae.encoding.backend_build import CALIBRATION_TEXTS, PARITY_TEXTS, export_onnx  # noqa: E402
from unimae.encoding.backends import OnnxRuntimeBody  # noqa: E402
from unimae.encoding.encoder import Encoder  # noqa: E402
from unimae.encoding.smoothquant import input_peaks, smooth  # noqa: E402

DEFAULT_VARIANTS = ["dynamic", "dynamic-fp32-down", "smoothquant-0.5", "nbits8-32", "nbits8-64", "hybrid"]


def matmul_names(file: Path, part: str = "") -> list[str]:
    """Names of the MatMul nodes of ``file`` whose name holds ``part`` (``down_proj``...)."""
    import onnx

    graph = onnx.load(str(file), load_external_data=False).graph
    return [n.name for n in graph.node if n.op_type == "MatMul" and part in n.name]


def dynamic(src: Path, dst: Path, exclude: list[str] | None = None) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(src),
        str(dst),
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=["MatMul"],
        nodes_to_exclude=exclude or [],
    )
    return dst


def nbits(src: Path, dst: Path, block: int, level: int = 4, exclude: list[str] | None = None) -> Path:
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    quantizer = MatMulNBitsQuantizer(
        onnx.load(str(src)),
        bits=8,
        block_size=block,
        is_symmetric=True,
        accuracy_level=level,
        nodes_to_exclude=exclude,
    )
    quantizer.process()
    quantizer.model.save_model_to_file(str(dst), use_external_data_format=False)
    return dst


def mix(src: Path, dst: Path, parts: list[str]) -> Path:
    """nbits8-32 for the MatMuls of ``parts`` (``["v_proj", "down_proj"]``), then ``dynamic`` for the others."""
    chosen = [n for part in parts for n in matmul_names(src, part)]
    others = [n for n in matmul_names(src) if n not in chosen]  # (nodes_to_include would add, not limit)
    middle = nbits(src, dst.with_name(dst.stem + "-stage.onnx"), 32, exclude=others)
    return dynamic(middle, dst)


def smoothed_graph(enc: Encoder, alpha: float, dst: Path) -> Path:
    """The fp32 graph of a SmoothQuant copy of ``enc``'s model with ``alpha``, calibrated as the export does
    (``unimae.encoding.backend_build.smoothed_copy``: held-out sentences, not the measured texts)."""
    from unimae.data.wiki import wiki_sentences

    texts = wiki_sentences("heldout")[:CALIBRATION_TEXTS]
    peaks = input_peaks(enc.model, lambda: vectors(enc, texts, 1))
    copy = deepcopy(enc.model)
    smooth(copy, peaks, alpha)
    return export_onnx(copy, dst)


def build(variant: str, fp32: Path, work: Path) -> Path:
    """The graph of ``variant`` in ``work`` (built on first use; ``smoothquant``'s smoothed fp32 graph must
    be in ``work/smoothed``)."""
    dst = work / f"{variant}.onnx"
    if dst.exists():
        return dst
    if variant == "dynamic":
        return dynamic(fp32, dst)
    if variant == "dynamic-fp32-down":
        return dynamic(fp32, dst, matmul_names(fp32, "down_proj"))
    if variant == "hybrid":
        return mix(fp32, dst, ["v_proj", "up_proj", "down_proj"])
    if "mix-" in variant:  # [smoothquant-A-]mix-PART+PART: nbits8-32 for those projections, dynamic elsewhere
        smoothed, parts = variant.split("mix-")
        src = work / smoothed.rstrip("-") / "model.onnx" if smoothed else fp32
        return mix(src, dst, [f"{part}_proj" for part in parts.split("+")])
    if variant == "nbits8-32-fp32":
        return nbits(fp32, dst, 32, level=0)
    if variant.startswith("nbits8-"):
        return nbits(fp32, dst, int(variant.split("-")[1]))
    if variant.startswith("smoothquant-"):
        return dynamic(work / variant / "model.onnx", dst)
    raise SystemExit(f"unknown variant {variant}")


class Sets:
    """The texts, each as ``(texts, batch size)``, and the torch fp32 reference vectors of each."""

    def __init__(self, enc: Encoder, n: int):
        short = texts_of(enc.tokenizer, n, 12)
        self.sets = {
            "short@32": (short, 32),
            "short@1": (short[:16], 1),
            "paragraph@32": (texts_of(enc.tokenizer, n // 2, 120), 32),
            "check@1": (list(PARITY_TEXTS), 1),
            "check@all": (list(PARITY_TEXTS), len(PARITY_TEXTS)),
        }
        self.ref = {k: vectors(enc, *v) for k, v in self.sets.items()}

    def cosines(self, enc: Encoder) -> dict:
        out = {}
        for k, (texts, batch) in self.sets.items():
            cos = (vectors(enc, texts, batch) * self.ref[k]).sum(1)
            out[k] = [round(float(cos.min()), 5), round(float(cos.mean()), 5)]
        every = np.concatenate([(vectors(enc, t, b) * self.ref[k]).sum(1) for k, (t, b) in self.sets.items()])
        out["all"] = [round(float(every.min()), 5), round(float(every.mean()), 5)]
        return out


def vectors(enc: Encoder, texts: list[str], batch: int) -> np.ndarray:
    return enc.encode(texts, batch_size=batch, normalize_embeddings=True, show_progress_bar=False)


def rate(enc: Encoder, texts: list[str], batch: int, repeats: int) -> float:
    vectors(enc, texts[: max(batch, 4)], batch)  # warm-up
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        vectors(enc, texts, batch)
        best = max(best, len(texts) / (time.perf_counter() - t))
    return best


def use(enc: Encoder, file: Path | None, threads: int) -> None:
    """Point ``enc`` at ``file``'s graph (None: back to torch)."""
    enc.runtime = None
    gc.collect()
    enc.backend, enc.runtime = ("onnx", OnnxRuntimeBody(file, threads)) if file else ("torch", None)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS)
    p.add_argument("--work", default="runs/onnx-int8-variants", help="graphs are built and kept here")
    p.add_argument("--n", type=int, default=64, help="short texts (paragraphs: half as many)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.work) / Path(args.model).name
    enc = Encoder.from_pretrained(args.model, device="cpu", backend="torch")
    fp32 = work / "fp32" / "model.onnx"
    if not fp32.exists():
        export_onnx(enc.model, fp32)
    for variant in args.variants:
        smoothed = work / variant.split("-mix-")[0] / "model.onnx"
        if variant.startswith("smoothquant-") and not smoothed.exists():
            smoothed_graph(enc, float(variant.split("-")[1]), smoothed)
    files = {v: build(v, fp32, work) for v in args.variants}
    sets = Sets(enc, args.n)
    rows = {"torch": {"variant": "torch fp32", "cos": None}}
    for v, file in files.items():
        use(enc, file, args.threads)
        rows[v] = {"variant": v, "cos": sets.cosines(enc), "mb": round(file.stat().st_size / 2**20)}
        print(json.dumps(rows[v]), flush=True)
    cells = {"short@1": sets.sets["short@1"], "short@32": sets.sets["short@32"]}
    cells["paragraph@32"] = sets.sets["paragraph@32"]
    for _ in range(args.rounds):
        for v in rows:
            use(enc, files.get(v), args.threads)
            for cell, (texts, batch) in cells.items():
                rows[v].setdefault(cell, []).append(rate(enc, texts, batch, args.repeats))
    use(enc, None, args.threads)
    print_table(list(rows.values()), list(cells))
    if args.json:
        Path(args.json).write_text(json.dumps(list(rows.values()), indent=1))


def print_table(rows: list[dict], cells: list[str]) -> None:
    """Best rate over the rounds per cell, with the ratio to torch; min/mean cosine over every set."""
    base = {c: max(rows[0][c]) for c in cells}
    print("\n| variant | min / mean cosine (all sets) | short only | " + " | ".join(cells) + " |")
    print("|---" * (len(cells) + 3) + "|")
    for r in rows:
        cos = r["cos"] or {"all": [1, 1], "short@32": [1, 1]}
        speed = [f"{max(r[c]):.1f} ({max(r[c]) / base[c]:.2f}x)" for c in cells]
        print(
            f"| {r['variant']} | {cos['all'][0]:.4f} / {cos['all'][1]:.4f} | {cos['short@32'][0]:.4f} | "
            + " | ".join(speed)
            + " |"
        )


if __name__ == "__main__":
    main()
