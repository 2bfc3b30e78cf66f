"""Training-step cost of MRC: median step time of MAR only vs MAR + MRC, measured side by side.

One model, one optimizer; the two variants alternate step by step (MAR only skips the tiny decoder),
so both see the same machine state. Prints median step time, the ratio, tokens/s, peak memory and,
on a GPU, model FLOPs utilisation.

    python benchmarks/step_time.py                                   # default model + config, CPU
    python benchmarks/step_time.py --shape llama-3.2-1b --precision bf16 --device cuda --batch-size 32 --max-length 512
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import statistics
import time

import torch

from unimae.data.corpus import load_texts
from unimae.objective.config import ObjectiveConfig
from unimae.objective.model import UniMAE
from unimae.tokens import bos_id_if_added, eos_token_id, mask_token_id
from unimae.training.build import make_optimizer
from unimae.training.config import DataConfig, OptimConfig, TrainConfig
from unimae.training.data import batch_indices, collate, tokenize_corpus

# Peak dense bf16 tensor throughput, for MFU.
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}


def llama_1b_shaped(tokenizer):
    """A randomly initialised model of Llama-3.2-1B's shape (no weights need to travel)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=128256,
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=131072,
        rope_theta=500000.0,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return LlamaForCausalLM(cfg)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS, KiB -> MiB


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--shape", choices=["llama-3.2-1b"], help="random model of this shape instead of --model")
    p.add_argument("--batch-size", type=int, default=OptimConfig().batch_size)
    p.add_argument("--max-length", type=int, default=DataConfig().max_length)
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument(
        "--head-precision",
        choices=["fp32", "bf16"],
        default=ObjectiveConfig().head_precision,
        help="precision of the vocabulary-head matmuls (default: TrainConfig's)",
    )
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--steps", type=int, default=8, help="timed steps per variant")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per variant")
    args = p.parse_args()

    from unimae.encoding.loading import load_causal_lm

    device = torch.device(args.device)
    llm, tok = load_causal_lm(args.model)
    if args.shape:
        torch.manual_seed(0)
        llm = llama_1b_shaped(tok)
        llm.resize_token_embeddings(max(len(tok), llm.config.vocab_size))
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    llm.to(device=device, dtype=dtype)
    cfg = TrainConfig(batch_size=args.batch_size, max_length=args.max_length)
    both = ObjectiveConfig(head_precision=args.head_precision)
    mar_only = dataclasses.replace(both, mrc_weight=0.0)
    model = UniMAE(llm, mask_token_id(tok), both, max_length=args.max_length, seed=0).to(
        device=device, dtype=dtype
    )
    optimizer = make_optimizer(model, cfg)
    eos = eos_token_id(tok)
    corpus = tokenize_corpus(load_texts("wiki"), tok, args.max_length, eos)
    if args.max_length > 64:  # wiki sentences are short: pack texts to fill the context
        corpus = [c for c in corpus if len(c) > 8]
    n_params = sum(p.numel() for p in llm.parameters())

    times: dict[str, list[float]] = {"MAR only": [], "MAR + MRC": []}
    tokens: dict[str, list[int]] = {k: [] for k in times}
    for i in range(2 * (args.steps + args.warmup)):
        variant = "MAR only" if i % 2 == 0 else "MAR + MRC"
        model.cfg = mar_only if variant == "MAR only" else both
        step = i // 2  # both variants see the same batch
        idx = batch_indices(len(corpus), args.batch_size, 0, step)
        batch = collate([corpus[j] for j in idx], idx, tok.pad_token_id, bos_id_if_added(tok) is not None).to(
            device
        )
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        out = model(batch, step)  # the whole batch on one device: its own target counts
        out.loss.backward()  # the loss training backpropagates
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step >= args.warmup:
            times[variant].append(time.perf_counter() - t)
            tokens[variant].append(int(batch.attention_mask.sum()))

    print(
        f"model {args.shape or args.model} ({n_params / 1e6:.0f}M params), {args.precision}, "
        f"head {args.head_precision}, device {device}, "
        f"batch {args.batch_size} x max {args.max_length} tokens, {torch.get_num_threads()} threads, {args.steps} timed steps each"
    )
    med = {k: statistics.median(v) for k, v in times.items()}
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else ""
    peak = next((v for k, v in PEAK_FLOPS.items() if k in gpu), None)
    for k in times:
        tps = statistics.mean(tokens[k]) / med[k]
        line = f"{k:10s}  median step {med[k]:7.3f} s   {tps:9.0f} tokens/s"
        if peak:
            line += f"   MFU {6 * n_params * tps / peak:6.1%} (6 N tokens/s over peak bf16)"
        print(line)
    print(f"ratio (MAR + MRC) / (MAR only): {med['MAR + MRC'] / med['MAR only']:.3f}x")
    print(
        f"peak memory: {peak_memory_mb(device):.0f} MiB ({'GPU allocated' if device.type == 'cuda' else 'process RSS'})"
    )


if __name__ == "__main__":
    main()
