"""Peak memory: the MRC mask for long inputs (measured), and a training step (predicted, and measured).

Every measurement runs in a fresh child process and reads its peak resident memory (``ru_maxrss``), so
it sees what torch allocates on the CPU (``tracemalloc`` does not); on a GPU use
``torch.cuda.max_memory_allocated`` instead (benchmarks/gpu_step.py).

    # the MRC visibility mask at B=8, L=4096: peak growth and time, today's objective/masking.py
    python benchmarks/memory.py --masks
    # the same for another version of the file, e.g. the one before the blocked masks
    git show dc31e6a~1:src/unimae/objective/masking.py > runs/old_masking.py
    python benchmarks/memory.py --masks --masking-file runs/old_masking.py

    # the formula's prediction of a training step's peak (docs/large-models.md explains each term)
    python benchmarks/memory.py --predict llama-3.2-1b --lora --model-dtype bf16 --batch-size 8 --max-length 512
    python benchmarks/memory.py --predict all                 # a table over every known shape

    # one real training run's peak RSS (2 steps, a child `unimae train`), next to the prediction
    python benchmarks/memory.py --step --config default --batch-size 16 --max-length 64
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from unimae.objective.losses import CHUNK_WORKING_SET_BYTES, auto_logit_bytes, resolve_chunk_size

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
    head_dim: int | None = None
    """Width of one attention head; None: d / heads (Gemma 3 sets its own: 256 for a 640-wide model)."""
    norms: int = 2
    """RMSNorms per block: 2 (Llama, Qwen2), 4 (Gemma 3: before and after attention and MLP)."""
    qk_norm: bool = False
    """RMSNorms on the queries and keys (Gemma 3)."""

    @property
    def d_head(self) -> int:
        return self.head_dim or self.d // self.heads

    @property
    def d_q(self) -> int:
        """Width of the queries (and of the attention output before o_proj)."""
        return self.d_head * self.heads

    @property
    def d_kv(self) -> int:
        return self.d_head * self.kv_heads

    def layer_linears(self) -> list[tuple[int, int]]:
        """(in, out) of the linear layers of one block: q, k, v, o, gate, up, down."""
        d, i = self.d, self.intermediate
        return [(d, self.d_q), (d, self.d_kv), (d, self.d_kv), (self.d_q, d), (d, i), (d, i), (i, d)]

    def params(self) -> int:
        per_layer = sum(a * b for a, b in self.layer_linears()) + 2 * self.d  # + two RMSNorms
        return self.vocab * self.d * (1 if self.tied else 2) + self.layers * per_layer + self.d

    def lora_params(self, r: int) -> int:
        """LoRA on every linear layer of every block ('all-linear' leaves the vocabulary head out)."""
        return self.layers * sum(r * (a + b) for a, b in self.layer_linears())


SHAPES = {  # from each model's config.json
    "smollm2-135m": Shape(49152, 576, 30, 1536, 9, 3, True),
    "gemma3-270m": Shape(262144, 640, 18, 2048, 4, 1, True, head_dim=256, norms=4, qk_norm=True),
    "smollm2-360m": Shape(49152, 960, 32, 2560, 15, 5, True),
    "qwen2.5-0.5b": Shape(151936, 896, 24, 4864, 14, 2, True),
    # the qwen2.5-coder-0.5b alias: its GGUF carries a separate (untied) head, so 630M parameters as loaded
    "qwen2.5-coder-0.5b": Shape(151936, 896, 24, 4864, 14, 2, False),
    "llama-3.2-1b": Shape(128256, 2048, 16, 8192, 32, 8, True),
    "llama-3.1-8b": Shape(128256, 4096, 32, 14336, 32, 8, False),
}


@dataclass(frozen=True)
class StepSetting:
    batch: int
    length: int
    lora: bool = True
    lora_r: int = 16
    lora_dropout: float = 0.05
    model_dtype: str = "fp32"
    """Storage of the frozen weights; trainable ones (LoRA, or all in a full fine-tune) stay fp32."""
    activation_dtype: str = "fp32"
    """fp32, or bf16 under mixed precision or a bf16 model."""
    head_bf16: bool = True
    loss_chunk: int = -1
    """``loss_chunk_size``: -1 auto (as training does: chunks of 256 MiB of fp32 logits in an fp32 model, of
    a chunk's 16-byte working set in a bf16/fp16 one), 0 never, N."""
    gradient_checkpointing: bool = False
    targets: int | None = None
    """Target tokens of each loss (MAR and MRC) in the batch; None: every token, batch x length."""
    device: str = "cpu"
    """cpu or cuda: where dropout keeps an fp32 noise tensor (cpu) or a bool mask (cuda's fused kernel)."""

    @property
    def low_memory_lora(self) -> bool:
        """LoRA over bf16/fp16 weights runs A through ``unimae.training.lora.LoraDown`` (build does)."""
        return self.lora and _BYTES[self.model_dtype] < 4


_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}


def block_activation_bytes(s: Shape, t: StepSetting) -> float:
    """Bytes one block saves for backward per token (sdpa attention: no L x L matrix).

    Counted from the tensors a Llama / Qwen2 / Gemma 3 block saves (autograd saved-tensor hooks on the
    real models, docs/large-models.md), per token, with ``a`` = bytes of the activation dtype:

    * every RMSNorm upcasts its input to fp32 and saves it (4 d, whatever the model's dtype); in a full
      fine-tune it also saves its normalised output and its scaled output (2 a d); Gemma 3 has 4 norms
      a block plus q/k norms (4 (d_q + d_kv));
    * attention: q, k and v (k, v repeated to every query head) and the output: 4 a d_q;
    * MLP: gate, up and act(gate): 3 a I;
    * full fine-tune: the inputs of o_proj and down_proj (a d_q + a I);
    * LoRA in an fp32 model (peft's path): with lora_dropout > 0 each adapted layer saves the dropped-out
      copy of its input and the dropout's fp32 noise on a CPU (a bool mask on CUDA): 8 (5 on CUDA) bytes
      x (5 d + d_q + I) (none with lora_dropout 0);
    * LoRA over bf16/fp16 weights (``LoraDown``): a bool keep mask per adapted input value (with dropout)
      and the 4 distinct inputs (attention input, o_proj's, MLP input, down_proj's) in the model's dtype,
      which the frozen layers alone would not save.
    """
    a, d, d_q, i = _BYTES[t.activation_dtype], s.d, s.d_q, s.intermediate
    per_norm = 4 * d + (0 if t.lora else 2 * a * d)
    total = s.norms * per_norm + (4 * (d_q + s.d_kv) if s.qk_norm else 0)
    total += 4 * a * d_q + 3 * a * i + (0 if t.lora else a * (d_q + i))
    if t.lora:
        lora_inputs = 5 * d + d_q + i
        if t.low_memory_lora:  # bool masks, and the 4 distinct inputs once in the model's dtype
            total += lora_inputs * (1 if t.lora_dropout > 0 else 0) + a * (2 * d + d_q + i)
        else:
            # CPU dropout multiplies by an fp32 noise tensor it keeps; CUDA's fused kernel keeps a bool mask
            mask = 4 if t.device == "cpu" else 1
            total += lora_inputs * ((4 + mask) if t.lora_dropout > 0 else (0 if a == 4 else 4))
    return total


def predict_step_bytes(s: Shape, t: StepSetting) -> dict[str, float]:
    """The terms of a UniMAE training step's peak memory, in bytes (docs/large-models.md, "The formula").

    The peak is where the forward pass ends: weights, optimizer states, every block's saved activations
    (:func:`block_activation_bytes`) and the vocabulary head's logits. Unchunked, each loss (MAR, MRC)
    saves bf16 logits and their fp32 log-softmax (6 bytes per target x vocabulary entry, 4 with an fp32
    head) and the first backward adds 8 more; a chunked loss saves nothing and holds one chunk (bf16 and
    fp32 logits, log-softmax, two fp32 gradients: 16 bytes). A bf16 head over fp32 weights also casts the
    head's weight to bf16 on every call (frozen weights are not cached by autocast).
    """
    n, tokens = s.params(), t.batch * t.length
    decoder = 12 * s.d * s.d + (t.length + 1) * s.d  # tiny decoder: attention 4 d^2, MLP 8 d^2, positions
    trainable = (s.lora_params(t.lora_r) if t.lora else n) + decoder
    frozen = n if t.lora else 0
    per_token = block_activation_bytes(s, t)
    if t.gradient_checkpointing:  # layer inputs kept, one block's activations rebuilt at a time
        activations = tokens * (s.layers * s.d * _BYTES[t.activation_dtype] + per_token)
    else:
        activations = tokens * s.layers * per_token
    targets = tokens if t.targets is None else t.targets
    chunk = resolve_chunk_size(t.loss_chunk, s.vocab, auto_logit_bytes(t.model_dtype))
    weight_copy = s.vocab * s.d * 2 if t.head_bf16 and _BYTES[t.model_dtype] == 4 else 0
    if chunk <= 0 or targets <= chunk:  # both losses' logits saved until backward
        logits = targets * s.vocab * (2 * (6 if t.head_bf16 else 4) + 8) + 2 * weight_copy
    else:  # one chunk at a time, recomputed in backward
        logits = chunk * s.vocab * CHUNK_WORKING_SET_BYTES + weight_copy
    # zero_grad(set_to_none) frees the grads before the forward. Backward first computes the vocabulary
    # head's gradient (full fine-tune: V d fp32) while every activation is still alive; the other grads
    # grow as the activations are freed, so they add to the peak only beyond what those held.
    head_grad = 0 if t.lora else s.vocab * s.d * 4
    grads = head_grad + max(0, trainable * 4 - head_grad - activations - logits)
    return {
        "frozen weights": frozen * _BYTES[t.model_dtype],
        "trainable weights (fp32)": trainable * 4,
        "grads (fp32)": grads,
        "AdamW states (fp32 x2)": trainable * 8,
        "activations": activations,
        "vocab logits": logits,
        "tiny decoder attention": t.batch * s.heads * t.length**2 * 4 * 2 + t.batch * t.length**2,
    }


def print_predict(args: argparse.Namespace) -> None:
    names = list(SHAPES) if args.predict == "all" else [args.predict]
    setting = step_setting(args)
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


_STEP_CHILD = """
import json, os, sys, time
import yaml
from unimae.training.config import load_config
from unimae.training.loop import Recipe

def status(field):  # bytes, from /proc/self/status (VmRSS: now, VmHWM: peak since start or reset)
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024

overrides = {k: yaml.safe_load(v) for k, v in (a.split("=", 1) for a in sys.argv[2:])}
recipe = Recipe(load_config(sys.argv[1], overrides))
recipe.setup()
setup_peak, before = status("VmHWM"), status("VmRSS")
open("/proc/self/clear_refs", "w").write("5")  # reset the peak: VmHWM now counts the steps only
recipe.save = lambda done: None  # writing a checkpoint is not a training step
shapes, targets, step = [], [], recipe.step
def counting_step(i, batch):  # the real (padded) batch shape and target count, for the formula
    shapes.append(list(batch.input_ids.shape))
    targets.append(int(batch.content_mask.sum()))
    return step(i, batch)
recipe.step = counting_step
t = time.perf_counter()
recipe.train()
seconds = time.perf_counter() - t
print(json.dumps({"setup_peak": setup_peak, "before_steps": before, "step_peak": status("VmHWM"),
                  "steps_seconds": seconds, "batch_shapes": shapes, "targets": targets}))
"""


def measure_train_step(config: str, overrides: list[str], threads: int) -> dict:
    """Peak RSS of a real training run (``Recipe`` of ``unimae train``, 2 steps) in a fresh process.

    Returns bytes: ``setup_peak`` (loading the model, building the objective), ``before_steps`` (resident
    once set up) and ``step_peak`` (the peak during the 2 optimizer steps alone: the kernel's peak
    counter is reset after setup, Linux ``/proc/self/clear_refs``), plus ``steps_seconds``.
    """
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-c", _STEP_CHILD, config, "steps=2", "save_every=0", f"output_dir={out}"]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        result = subprocess.run([*cmd, *overrides], capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise SystemExit(f"training run failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


_BASELINE_CHILD = "import resource, peft, transformers, unimae.training.loop; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)"


def step_setting(args: argparse.Namespace) -> StepSetting:
    """The formula's setting for the command line's flags (activations follow the model's dtype)."""
    return StepSetting(
        batch=args.batch_size,
        length=args.max_length,
        lora=args.lora,
        model_dtype=args.model_dtype,
        activation_dtype=args.activation_dtype or ("fp32" if args.model_dtype == "fp32" else "bf16"),
        head_bf16=args.head_precision == "bf16",
        loss_chunk=args.loss_chunk,
        gradient_checkpointing=args.gradient_checkpointing,
        device=args.device,
    )


def print_step(args: argparse.Namespace) -> None:
    """Measure one setting, print it next to the formula's prediction, and append both to ``--jsonl``."""
    overrides = [
        f"batch_size={args.batch_size}",
        f"max_length={args.max_length}",
        f"lora={str(args.lora).lower()}",
        f"model_dtype={args.model_dtype}",
        f"head_precision={args.head_precision}",
        f"loss_chunk_size={args.loss_chunk}",
        f"gradient_checkpointing={str(args.gradient_checkpointing).lower()}",
    ]
    overrides += args.override
    t = time.perf_counter()
    m = measure_train_step(args.config, overrides, args.threads)
    base = int(subprocess.run([sys.executable, "-c", _BASELINE_CHILD], capture_output=True, text=True).stdout)
    # the formula on the batches that ran: padded to their longest text, targets = text tokens
    (batch, length), targets = max(m["batch_shapes"]), max(m["targets"])
    setting = replace(step_setting(args), batch=batch, length=length, targets=targets)
    terms = predict_step_bytes(SHAPES[args.shape], setting)
    predicted, state = sum(terms.values()), m["step_peak"] - base
    print(
        f"MEASURED {args.config} {' '.join(overrides)} ({time.perf_counter() - t:.0f} s, steps "
        f"{m['steps_seconds']:.0f} s): step peak RSS {m['step_peak'] / GIB:.2f} GiB, setup peak "
        f"{m['setup_peak'] / GIB:.2f} GiB, resident before the steps {m['before_steps'] / GIB:.2f} GiB; "
        f"process baseline (imports) {base / GIB:.2f} GiB; step state (step peak - baseline) {state / GIB:.2f} GiB"
    )
    detail = ", ".join(f"{k} {v / GIB:.2f}" for k, v in terms.items())
    print(
        f"PREDICTED step state for shape {args.shape}: {predicted / GIB:.2f} GiB "
        f"({100 * (predicted - state) / state:+.0f}% of measured) = {detail}"
    )
    if args.jsonl:
        record = {"config": args.config, "shape": args.shape, "overrides": overrides, "baseline": base}
        record["low_memory_lora"] = setting.low_memory_lora
        record["malloc_mmap_threshold"] = os.environ.get("MALLOC_MMAP_THRESHOLD_")
        record["setting"] = dataclasses.asdict(setting)
        record.update(m, predicted=predicted, terms=terms)
        with open(args.jsonl, "a") as f:
            f.write(json.dumps(record) + "\n")


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
    p.add_argument("--loss-chunk", type=int, default=-1, help="loss_chunk_size: -1 auto (default), 0 never")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="--predict: where the step runs")
    p.add_argument("--config", default="default", help="--step: the recipe to run")
    p.add_argument("--shape", choices=list(SHAPES), default="smollm2-135m", help="--step: shape to predict")
    p.add_argument("--jsonl", type=Path, help="--step: append the measurement and prediction to this file")
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
