"""Peak memory: the MRC mask for long inputs (measured), and a training step (predicted, and measured).

Every measurement runs in a fresh child process and reads its peak resident memory (``ru_maxrss``), so
it sees what torch allocates on the CPU (``tracemalloc`` does not); on a GPU use
``torch.cuda.max_memory_allocated`` instead (benchmarks/gpu_step.py).

    # the MRC visibility mask at B=8, L=4096: peak growth and time, today's objective/masking.py
    python benchmarks/memory.py --masks
    # the same for another version of the file, e.g. the one before the blocked masks
    git show dc31e6a~1:src/unimae/objective/masking.py > /tmp/old_masking.py
    python benchmarks/memory.py --masks --masking-file /tmp/old_masking.py

    # the formula's prediction of a training step's peak (docs/large-models.md explains each term)
    python benchmarks/memory.py --predict llama-3.2-1b --lora --model-dtype bf16 --batch-size 8 --max-length 512
    python benchmarks/memory.py --predict all                 # a table over every known shape

    # one real training run's peak RSS (2 steps, a child `unimae train`), next to the prediction
    python benchmarks/memory.py --step --config configs/default.yaml --batch-size 16 --max-length 64
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

GIB = 2**30

# ---------------------------------------------------------------------------------------------------------
# Measured: the MRC mask
# ---------------------------------------------------------------------------------------------------------

_MASKS_CHILD = """
import importlib.util, json, resource, sys, time
import torch
spec = importlib.util.spec_from_file_location("masking_under_test", sys.argv[1])
masking = importlib.util.module_from_spec(spec)
spec.loader.exec_module(masking)
B, L, ratio = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
keys = masking.example_keys(0, 0, torch.arange(B))
key_valid = torch.ones(B, L, dtype=torch.bool)
masking.mrc_visibility(keys, key_valid[:, :64], ratio)  # load the kernels before the baseline
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
vis = masking.mrc_visibility(keys, key_valid, ratio)
seconds = time.perf_counter() - t
grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
print(json.dumps({"peak_growth_bytes": grown, "seconds": seconds, "result_bytes": vis.numel()}))
"""


def measure_masks(masking_file: Path, batch: int, length: int, ratio: float, threads: int) -> dict:
    """Peak RSS growth and wall time of one ``mrc_visibility(B, L)`` call, in a fresh process (Linux)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-c", _MASKS_CHILD, str(masking_file), str(batch), str(length), str(ratio)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def print_masks(args: argparse.Namespace) -> None:
    masking_file = args.masking_file or Path(__file__).parents[1] / "src/unimae/objective/masking.py"
    r = measure_masks(masking_file, args.batch_size, args.max_length, args.ratio, args.threads)
    print(
        f"mrc_visibility B={args.batch_size} L={args.max_length} ratio={args.ratio} ({masking_file}), "
        f"{args.threads} thread(s): peak RSS +{r['peak_growth_bytes'] / 2**20:.0f} MiB "
        f"(the bool result itself: {r['result_bytes'] / 2**20:.0f} MiB), {r['seconds']:.2f} s"
    )


# ---------------------------------------------------------------------------------------------------------
# Predicted: a training step
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """The sizes of a decoder-only LLM that decide its training memory."""

    vocab: int
    d: int
    layers: int
    intermediate: int
    heads: int
    kv_heads: int
    tied: bool

    @property
    def d_kv(self) -> int:
        return self.d // self.heads * self.kv_heads

    def layer_linears(self) -> list[tuple[int, int]]:
        """(in, out) of the linear layers of one block: q, k, v, o, gate, up, down."""
        d, i = self.d, self.intermediate
        return [(d, d), (d, self.d_kv), (d, self.d_kv), (d, d), (d, i), (d, i), (i, d)]

    def params(self) -> int:
        per_layer = sum(a * b for a, b in self.layer_linears()) + 2 * self.d  # + two RMSNorms
        return self.vocab * self.d * (1 if self.tied else 2) + self.layers * per_layer + self.d

    def lora_params(self, r: int) -> int:
        """LoRA on every linear layer of every block ('all-linear' leaves the vocabulary head out)."""
        return self.layers * sum(r * (a + b) for a, b in self.layer_linears())


SHAPES = {  # from each model's config.json
    "smollm2-135m": Shape(49152, 576, 30, 1536, 9, 3, True),
    "smollm2-360m": Shape(49152, 960, 32, 2560, 15, 5, True),
    "qwen2.5-0.5b": Shape(151936, 896, 24, 4864, 14, 2, True),
    "llama-3.2-1b": Shape(128256, 2048, 16, 8192, 32, 8, True),
    "llama-3.1-8b": Shape(128256, 4096, 32, 14336, 32, 8, False),
}


@dataclass(frozen=True)
class StepSetting:
    batch: int
    length: int
    lora: bool = True
    lora_r: int = 16
    model_dtype: str = "fp32"
    """Storage of the frozen weights; trainable ones (LoRA, or all in a full fine-tune) stay fp32."""
    activation_dtype: str = "fp32"
    """fp32, or bf16 under mixed precision or a bf16 model."""
    head_bf16: bool = True
    loss_chunk: int = 0
    gradient_checkpointing: bool = False


_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}


def predict_step_bytes(s: Shape, t: StepSetting) -> dict[str, float]:
    """The terms of a UniMAE training step's peak memory, in bytes (docs/large-models.md, "The formula").

    Activations count, per token and block, what a Llama block saves for backward with sdpa attention
    (no L x L matrix): about 10 d + 2 d_kv + 4 I values, plus the dropout-ed input of every LoRA layer
    (6 d + I). The vocabulary head holds fp32 logits, their log-softmax and (in backward) their gradient
    for the MAR and the MRC targets, B L each (all at once, or one ``loss_chunk`` at a time).
    """
    n, tokens = s.params(), t.batch * t.length
    decoder = 12 * s.d * s.d + (t.length + 1) * s.d  # tiny decoder: attention 4 d^2, MLP 8 d^2, positions
    trainable = (s.lora_params(t.lora_r) if t.lora else n) + decoder
    frozen = n if t.lora else 0
    act_bytes = _BYTES[t.activation_dtype]
    per_token = 10 * s.d + 2 * s.d_kv + 4 * s.intermediate + ((6 * s.d + s.intermediate) if t.lora else 0)
    if t.gradient_checkpointing:  # layer inputs kept, one block's activations rebuilt at a time
        activations = tokens * (s.layers * s.d + per_token) * act_bytes
    else:
        activations = tokens * s.layers * per_token * act_bytes
    # unchunked, both losses' logits live until backward; chunks are recomputed there, one at a time
    logit_rows = 2 * tokens if t.loss_chunk <= 0 else min(tokens, t.loss_chunk)
    logit_bytes = 12 + (2 if t.head_bf16 else 0)  # fp32 logits + log-softmax + grad (+ the bf16 matmul out)
    return {
        "frozen weights": frozen * _BYTES[t.model_dtype],
        "trainable weights (fp32)": trainable * 4,
        "grads (fp32)": trainable * 4,
        "AdamW states (fp32 x2)": trainable * 8,
        "activations": activations,
        "vocab logits": logit_rows * s.vocab * logit_bytes,
        "tiny decoder attention": t.batch * s.heads * t.length**2 * 4 * 2 + t.batch * t.length**2,
    }


def print_predict(args: argparse.Namespace) -> None:
    names = list(SHAPES) if args.predict == "all" else [args.predict]
    setting = StepSetting(
        batch=args.batch_size,
        length=args.max_length,
        lora=args.lora,
        model_dtype=args.model_dtype,
        activation_dtype=args.activation_dtype or ("fp32" if args.model_dtype == "fp32" else "bf16"),
        head_bf16=args.head_precision == "bf16",
        loss_chunk=args.loss_chunk,
        gradient_checkpointing=args.gradient_checkpointing,
    )
    print(f"PREDICTED (formula, not measured): {setting}")
    for name in names:
        terms = predict_step_bytes(SHAPES[name], setting)
        detail = ", ".join(f"{k} {v / GIB:.2f}" for k, v in terms.items())
        print(
            f"{name:14s} {SHAPES[name].params() / 1e6:6.0f}M params: {sum(terms.values()) / GIB:6.2f} GiB = {detail}"
        )


# ---------------------------------------------------------------------------------------------------------
# Measured: a training step (a real `unimae train` run in a child process)
# ---------------------------------------------------------------------------------------------------------


def measure_train_rss(config: str, overrides: list[str], threads: int) -> float:
    """Peak RSS in bytes of a child ``unimae train`` (2 steps, no export) with these overrides."""
    unimae = Path(sys.executable).with_name("unimae")
    with tempfile.TemporaryDirectory() as out:
        cmd = [str(unimae), "train", "--config", config, "steps=2", "save_every=0", "export=false"]
        cmd += [f"output_dir={out}", *overrides]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024


_BASELINE_CHILD = "import resource, peft, transformers, unimae.training.loop; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)"


def print_step(args: argparse.Namespace) -> None:
    overrides = [
        f"batch_size={args.batch_size}",
        f"max_length={args.max_length}",
        f"lora={str(args.lora).lower()}",
    ]
    overrides += args.override
    t = time.perf_counter()
    peak = measure_train_rss(args.config, overrides, args.threads)
    base = int(subprocess.run([sys.executable, "-c", _BASELINE_CHILD], capture_output=True, text=True).stdout)
    setting = StepSetting(batch=args.batch_size, length=args.max_length, lora=args.lora)
    predicted = sum(predict_step_bytes(SHAPES[args.shape], setting).values())
    print(
        f"MEASURED {args.config} {' '.join(overrides)}: peak RSS {peak / GIB:.2f} GiB "
        f"({time.perf_counter() - t:.0f} s); process baseline (imports) {base / GIB:.2f} GiB; "
        f"step state {(peak - base) / GIB:.2f} GiB"
    )
    print(f"PREDICTED step state for shape {args.shape}: {predicted / GIB:.2f} GiB (formula, fp32)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument(
        "--masks", action="store_true", help="measure mrc_visibility at --batch-size x --max-length"
    )
    mode.add_argument(
        "--predict", choices=[*SHAPES, "all"], help="the formula's prediction for a model shape"
    )
    mode.add_argument("--step", action="store_true", help="measure a 2-step `unimae train` run's peak RSS")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-length", type=int, default=4096)
    p.add_argument("--ratio", type=float, default=0.5, help="--masks: mrc_mask_ratio")
    p.add_argument("--masking-file", type=Path, help="--masks: another masking.py to measure")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--lora", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--model-dtype", choices=list(_BYTES), default="fp32")
    p.add_argument(
        "--activation-dtype", choices=list(_BYTES), help="default: fp32 for an fp32 model, else bf16"
    )
    p.add_argument("--head-precision", choices=["fp32", "bf16"], default="bf16")
    p.add_argument("--loss-chunk", type=int, default=0)
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--config", default="configs/default.yaml", help="--step: the recipe to run")
    p.add_argument("--shape", choices=list(SHAPES), default="smollm2-135m", help="--step: shape to predict")
    p.add_argument("override", nargs="*", help="--step: extra key=value overrides for unimae train")
    args = p.parse_args()
    if args.masks:
        print_masks(args)
    elif args.predict:
        print_predict(args)
    else:
        print_step(args)


if __name__ == "__main__":
    main()
