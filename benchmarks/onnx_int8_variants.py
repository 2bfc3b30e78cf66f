"""Ways to quantize the ONNX graph to int8, side by side: min/mean cosine against PyTorch fp32 and texts/s.

Every variant is built from the same fp32 graph (``unimae.encoding.backend_build.export_onnx``) and run in
ONNX Runtime on the same texts: 64 short Wikipedia texts (about 12 tokens) at batch 32 and 16 of them at
batch 1, 32 paragraphs (about 120 tokens) at batch 32, and the export check's built-in sentences
(``unimae.export.onnx.PARITY_TEXTS``, alone and in one batch). Speed: rounds that time torch and every
variant in turn (each loaded afresh), best of ``--repeats`` passes each; ratios are against torch.

Variants (``--variants``):
  dynamic            ONNX Runtime ``quantize_dynamic``: int8 MatMul weights per channel, activations per
                     tensor at run time (the old ``onnx-int8``)
  dynamic-fp32-down  the same with the 30 ``mlp.down_proj`` MatMuls left in fp32
  smoothquant-A      SmoothQuant with alpha A (activation outliers moved into the weights, folded into the
                     norms, ``up_proj`` and ``v_proj``, from 128 calibration texts), then ``dynamic``
  nbits8-B           ``MatMulNBitsQuantizer``: int8 weights in blocks of B along the input (symmetric),
                     ``accuracy_level`` 4: activations quantized per row and block of B at run time and
                     int8 dot products (B in 16, 32, 64, 128)
  nbits8-32-fp32     the same weights with fp32 compute (``accuracy_level`` 0)
  hybrid             ``dynamic`` for q/k/o/gate projections, ``nbits8-32`` for v/up/down

    OMP_NUM_THREADS=1 MALLOC_MMAP_THRESHOLD_=1048576 nice -n 5 python benchmarks/onnx_int8_variants.py \
        --model smollm2-135m --threads 1
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from encode_backends import texts_of  # noqa: E402

from unimae.encoding.backend_build import export_onnx  # noqa: E402
from unimae.encoding.backends import OnnxRuntimeBody  # noqa: E402
from unimae.encoding.encoder import Encoder  # noqa: E402
from unimae.export.onnx import PARITY_TEXTS  # noqa: E402

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


def hybrid(src: Path, dst: Path) -> Path:
    """nbits8-32 for the sensitive projections (v, up, down), then ``dynamic`` for the other MatMuls."""
    sensitive = [n for part in ("v_proj", "up_proj", "down_proj") for n in matmul_names(src, part)]
    others = [n for n in matmul_names(src) if n not in sensitive]  # (nodes_to_include would add, not limit)
    middle = nbits(src, dst.with_name("hybrid-stage.onnx"), 32, exclude=others)
    return dynamic(middle, dst)


@torch.no_grad()
def smooth(enc: Encoder, texts: list[str], alpha: float = 0.5) -> None:
    """SmoothQuant on ``enc``'s Llama-style model, in place: each projection's input channel j divided by
    ``s_j = max|x_j|^alpha / max|W_:j|^(1-alpha)`` (its weight column multiplied by it), the division folded
    into what writes that input: the RMSNorm weights (q/k/v, gate/up), ``up_proj``'s rows (down) and
    ``v_proj``'s rows (o: one scale per kv channel, the largest over the query heads of its group).
    ``max|x_j|``: over ``texts`` embedded one at a time."""
    peaks: dict[str, torch.Tensor] = {}

    def record(name):
        def hook(module, args):
            x = args[0].detach().abs().reshape(-1, args[0].shape[-1]).amax(0)
            peaks[name] = torch.maximum(peaks.get(name, x), x)

        return hook

    layers = enc.model.model.layers
    watched = (("self_attn", "q_proj"), ("self_attn", "o_proj"), ("mlp", "gate_proj"), ("mlp", "down_proj"))
    hooks = [
        getattr(getattr(layer, part), proj).register_forward_pre_hook(record(f"{i}.{proj}"))
        for i, layer in enumerate(layers)
        for part, proj in watched
    ]
    vectors(enc, texts, 1)
    for h in hooks:
        h.remove()

    def scales(x_peak, *linears):
        w_peak = torch.stack([lin.weight.abs().amax(0) for lin in linears]).amax(0)
        return (x_peak.clamp(min=1e-5) ** alpha / w_peak.clamp(min=1e-5) ** (1 - alpha)).clamp(min=1e-5)

    for i, layer in enumerate(layers):
        attn, mlp = layer.self_attn, layer.mlp
        s = scales(peaks[f"{i}.q_proj"], attn.q_proj, attn.k_proj, attn.v_proj)
        layer.input_layernorm.weight.div_(s)
        for lin in (attn.q_proj, attn.k_proj, attn.v_proj):
            lin.weight.mul_(s)
        s = scales(peaks[f"{i}.gate_proj"], mlp.gate_proj, mlp.up_proj)
        layer.post_attention_layernorm.weight.div_(s)
        for lin in (mlp.gate_proj, mlp.up_proj):
            lin.weight.mul_(s)
        s = scales(peaks[f"{i}.down_proj"], mlp.down_proj)
        mlp.up_proj.weight.div_(s[:, None])
        mlp.down_proj.weight.mul_(s)
        groups, head_dim = attn.num_key_value_groups, attn.head_dim
        s = scales(peaks[f"{i}.o_proj"], attn.o_proj).view(-1, groups, head_dim).amax(1)  # (kv heads, hd)
        attn.v_proj.weight.div_(s.reshape(-1)[:, None])
        attn.o_proj.weight.mul_(s[:, None, :].expand(-1, groups, -1).reshape(-1))


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
        return hybrid(fp32, dst)
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
        smoothed = work / variant / "model.onnx"
        if variant.startswith("smoothquant-") and not smoothed.exists():
            alpha = float(variant.split("-")[1])
            smooth(enc, texts_of(enc.tokenizer, 3 * args.n, 40)[args.n :], alpha)  # not the measured texts
            export_onnx(enc.model, smoothed)
            del enc
            gc.collect()
            enc = Encoder.from_pretrained(args.model, device="cpu", backend="torch")  # unsmoothed again
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
