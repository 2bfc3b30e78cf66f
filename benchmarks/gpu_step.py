"""One real training run, measured: step time, tokens/s, peak memory, MFU and the first step's losses.

Runs ``unimae.training.loop.train`` in this process (so ``torch.cuda.max_memory_allocated`` sees it) and
reads the run's metrics.jsonl. scripts/gpu_check.sh calls it; every part also runs on a CPU.

    python benchmarks/gpu_step.py --out runs/gpu-check/bf16 steps=30 precision=bf16        # on the GPU
    python benchmarks/gpu_step.py --device cpu --out runs/gpu-check/cpu steps=1            # the CPU reference
    python benchmarks/gpu_step.py --compare runs/gpu-check/cpu runs/gpu-check/fp32 --rtol 1e-3

MFU counts 6 N FLOPs per token for a full fine-tune and 4 N with LoRA (no weight gradients of the
frozen base), N the LLM's parameters, against the card's dense bf16 peak (PEAK_TFLOPS, or the
UNIMAE_PEAK_TFLOPS environment variable for other cards). It is an estimate, not a profile.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
from pathlib import Path

# Dense bf16 tensor-core peaks (no sparsity), TFLOP/s, from the vendors' data sheets (SXM parts).
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L4": 121.0}


def peak_tflops(device_name: str) -> float | None:
    """The card's bf16 peak: UNIMAE_PEAK_TFLOPS if set, else the table, else None (no MFU printed)."""
    if os.environ.get("UNIMAE_PEAK_TFLOPS"):
        return float(os.environ["UNIMAE_PEAK_TFLOPS"])
    return next((v for k, v in PEAK_TFLOPS.items() if k in device_name), None)


def run(out: Path, config: str, overrides: list[str]) -> dict:
    """Train with ``config`` + overrides into ``out``; returns the summary (also written to summary.json)."""
    import torch
    import yaml

    from unimae.encoding.loading import load_causal_lm
    from unimae.training.config import load_config
    from unimae.training.loop import train

    values = {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in overrides)}  # as the CLI reads them
    cfg = load_config(config, {**values, "output_dir": str(out), "export": False})
    cuda = torch.cuda.is_available() and os.environ.get("ACCELERATE_USE_CPU", "").lower() != "true"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    train(cfg)
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    timed = lines[2:] or lines  # the first steps pay for compilation and allocator warm-up
    step_time = statistics.median(m["step_time"] for m in timed)
    tokens_per_s = statistics.median(m["tokens"] / m["step_time"] for m in timed)
    n_params = sum(p.numel() for p in load_causal_lm(cfg.model)[0].parameters())
    device = torch.cuda.get_device_name() if cuda else "cpu"
    peak = peak_tflops(device) if cuda else None
    summary = {
        "device": device,
        "precision": cfg.precision,
        "lora": cfg.lora.enabled,
        "steps": len(lines),
        "median_step_s": step_time,
        "tokens_per_s": tokens_per_s,
        "peak_memory_gib": (
            torch.cuda.max_memory_allocated()
            if cuda
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        )
        / 2**30,
        "peak_memory_kind": "cuda max_memory_allocated" if cuda else "process peak RSS",
        "mfu": (4 if cfg.lora.enabled else 6) * n_params * tokens_per_s / (peak * 1e12) if peak else None,
        "step1": {k: lines[0][k] for k in ("mar_loss", "mrc_loss", "grad_norm") if k in lines[0]},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def compare(reference: Path, other: Path, rtol: float) -> bool:
    """True when ``other``'s step-1 losses equal ``reference``'s within ``rtol``; prints each."""
    a = json.loads((reference / "summary.json").read_text())["step1"]
    b = json.loads((other / "summary.json").read_text())["step1"]
    ok = True
    for k in ("mar_loss", "mrc_loss"):
        rel = abs(a[k] - b[k]) / max(abs(a[k]), 1e-12)
        ok &= rel <= rtol
        print(
            f"step 1 {k}: {reference.name} {a[k]:.6f}  {other.name} {b[k]:.6f}  rel {rel:.1e} (<= {rtol:g}?)"
        )
    return ok


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="default")
    p.add_argument("--out", type=Path, help="run folder (its summary.json holds the figures)")
    p.add_argument("--device", choices=["auto", "cpu"], default="auto", help="cpu: force the CPU")
    p.add_argument(
        "--compare", nargs=2, type=Path, metavar=("REFERENCE", "OTHER"), help="compare step-1 losses"
    )
    p.add_argument("--rtol", type=float, default=1e-3)
    p.add_argument("override", nargs="*", help="key=value overrides for the training config")
    args = p.parse_args()
    if args.compare:
        return 0 if compare(*args.compare, args.rtol) else 1
    if args.out is None:
        p.error("--out is required unless --compare")
    if args.device == "cpu":
        os.environ["ACCELERATE_USE_CPU"] = "true"  # read by Accelerator, before anything is built
    s = run(args.out, args.config, args.override)
    mfu = f"{s['mfu']:.1%}" if s["mfu"] is not None else "n/a (no bf16 peak for this device)"
    print(
        f"{s['device']} {s['precision']} lora={s['lora']}: median step {s['median_step_s']:.3f} s, "
        f"{s['tokens_per_s']:.0f} tokens/s, peak memory {s['peak_memory_gib']:.2f} GiB ({s['peak_memory_kind']}), "
        f"MFU {mfu}; step 1 {s['step1']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
