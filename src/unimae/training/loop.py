"""The UniMAE training loop: setup -> train -> save, explicit, on Accelerate.

The same code runs on CPU, one GPU, or several processes (``accelerate launch`` / ``torchrun``).
Every process builds the same global batch (a pure function of the step) and takes its slice, so
N processes with the same ``batch_size`` compute the same losses as one.

    unimae train --config configs/default.yaml steps=100
    accelerate launch --num_processes 2 -m unimae.cli train --config configs/default.yaml
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from accelerate.utils import set_seed
from tqdm.auto import tqdm
from transformers import get_scheduler

from unimae.data.corpus import load_texts
from unimae.encoding.loading import context_length, load_causal_lm
from unimae.objective.mntp import MNTP
from unimae.objective.model import UniMAE
from unimae.tokens import bos_id_if_added, eos_token_id, mask_token_id
from unimae.training.checkpoint import checkpoint_step, find_checkpoint, save_checkpoint
from unimae.training.config import TrainConfig, load_config
from unimae.training.data import step_batches, tokenize_corpus
from unimae.training.export import embedding_info, export_causal_lm

log = logging.getLogger(__name__)

# Fields that may differ between a run and its resumption.
RESUMABLE_CHANGES = {"steps", "save_every", "log_every", "export", "output_dir"}


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss."""


@dataclass
class Setup:
    model: UniMAE | MNTP
    tokenizer: object
    eos_id: int
    bos_id: int | None


def build(cfg: TrainConfig) -> Setup:
    """The LLM (optionally with LoRA) wrapped in UniMAE with a fresh tiny decoder."""
    set_seed(cfg.seed)
    llm, tokenizer = load_causal_lm(cfg.model)
    context = context_length(llm)
    if context is not None and cfg.max_length > context:
        raise ValueError(f"max_length={cfg.max_length} exceeds the model's context of {context} tokens")
    if cfg.gradient_checkpointing:
        llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if cfg.lora:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=cfg.lora_target_modules,
            task_type="CAUSAL_LM",
        )
        llm = get_peft_model(llm, lora)
    eos = eos_token_id(tokenizer, cfg.eos_token)
    if cfg.objective == "mntp":
        model = MNTP(
            llm,
            mask_token_id(tokenizer, cfg.mask_token),
            mask_ratio=cfg.mntp_mask_ratio,
            loss_chunk_size=cfg.loss_chunk_size,
            head_bf16=cfg.head_precision == "bf16",
            seed=cfg.seed,
        )
        return Setup(model, tokenizer, eos, bos_id_if_added(tokenizer))
    model = UniMAE(
        llm,
        mask_token_id(tokenizer, cfg.mask_token),
        mar_mask_ratio=cfg.mar_mask_ratio,
        mrc_mask_ratio=cfg.mrc_mask_ratio,
        alpha=cfg.alpha,
        mrc_weight=cfg.mrc_weight,
        mar_predict_eos=cfg.mar_predict_eos,
        max_length=cfg.max_length,
        decoder_heads=cfg.decoder_heads,
        decoder_mlp_ratio=cfg.decoder_mlp_ratio,
        decoder_share_embeddings=cfg.decoder_share_embeddings,
        decoder_pos_init_std=cfg.decoder_pos_init_std,
        loss_chunk_size=cfg.loss_chunk_size,
        head_bf16=cfg.head_precision == "bf16",
        seed=cfg.seed,
    )
    return Setup(model, tokenizer, eos, bos_id_if_added(tokenizer))


def make_optimizer(model: UniMAE | MNTP, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW with two groups: the LLM at ``lr``, the tiny decoder (from scratch) at ``decoder_lr``."""
    decoder_params = [p for n, p in model.named_parameters() if not n.startswith("llm.") and p.requires_grad]
    llm_params = [p for n, p in model.named_parameters() if n.startswith("llm.") and p.requires_grad]
    groups = [{"params": llm_params, "lr": cfg.lr}, {"params": decoder_params, "lr": cfg.decoder_lr}]
    return torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=cfg.weight_decay)


def _resolve_resume(cfg: TrainConfig, run_dir: Path, resume: bool) -> tuple[TrainConfig, Path | None]:
    ckpt = find_checkpoint(run_dir)
    if not resume:
        if ckpt is not None:
            raise FileExistsError(
                f"{run_dir} already holds a checkpoint: pass --resume to continue it, or choose another output_dir"
            )
        return cfg, None
    saved_path = run_dir / "config.yaml"
    if ckpt is None or not saved_path.exists():
        raise FileNotFoundError(f"--resume: no complete checkpoint in {run_dir}")
    saved = load_config(saved_path)
    changed = sorted(
        k for k, v in cfg.to_dict().items() if saved.to_dict()[k] != v and k not in RESUMABLE_CHANGES
    )
    if changed:
        raise ValueError(
            f"--resume with a config that differs from the run's in {changed}; resume with the saved config.yaml"
        )
    return cfg, ckpt


def train(cfg: TrainConfig, resume: bool = False) -> Path:
    """Train UniMAE as configured; returns the run folder (with model/ if cfg.export)."""
    run_dir = Path(cfg.output_dir)
    cfg, ckpt = _resolve_resume(cfg, run_dir, resume)
    accelerator = Accelerator(
        mixed_precision={"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[cfg.precision],
        kwargs_handlers=[
            DistributedDataParallelKwargs(
                find_unused_parameters=cfg.objective == "unimae" and cfg.mrc_weight == 0
            )
        ],
    )
    world, rank = accelerator.num_processes, accelerator.process_index
    micro_total = world * cfg.grad_accum_steps
    if cfg.batch_size % micro_total:
        raise ValueError(
            f"batch_size={cfg.batch_size} must be divisible by processes x grad_accum_steps = {micro_total}"
        )
    micro = cfg.batch_size // micro_total

    # --- setup ---
    texts = load_texts(cfg.data, split="train", text_field=cfg.text_field, max_texts=cfg.max_texts)
    setup = build(cfg)
    corpus = tokenize_corpus(texts, setup.tokenizer, cfg.max_length, setup.eos_id)
    model, tokenizer = setup.model, setup.tokenizer
    optimizer = make_optimizer(model, cfg)
    scheduler = get_scheduler(
        cfg.lr_scheduler, optimizer, num_warmup_steps=cfg.warmup_steps, num_training_steps=cfg.steps
    )
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)
    start = 0
    if ckpt is not None:
        accelerator.load_state(str(ckpt))
        start = checkpoint_step(ckpt)
        accelerator.print(f"resumed {run_dir} from step {start}")
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        cfg.save(run_dir / "config.yaml")
        _trim_metrics(run_dir / "metrics.jsonl", start)
    accelerator.wait_for_everyone()
    accelerator.print(
        f"{len(corpus)} training texts, {cfg.steps} steps x {cfg.batch_size} texts, {world} process(es)"
    )

    # --- train ---
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else setup.eos_id
    bar = tqdm(
        total=cfg.steps,
        initial=start,
        desc="unimae",
        disable=not accelerator.is_main_process,
        dynamic_ncols=True,
    )
    t_last = time.perf_counter()
    core = setup.model  # the objective itself, also when wrapped for DDP
    for step, batch in step_batches(
        corpus, cfg.batch_size, cfg.seed, start, cfg.steps, pad_id, setup.bos_id is not None
    ):
        counts = core.target_counts(batch, step)  # global normalisers, known on every rank
        names = sorted(counts)
        local = batch.slice(rank * micro * cfg.grad_accum_steps, (rank + 1) * micro * cfg.grad_accum_steps)
        stats = torch.zeros(
            2 * len(names) + 1, dtype=torch.float64, device=accelerator.device
        )  # sums, correct, tokens
        for k in range(cfg.grad_accum_steps):
            mb = local.slice(k * micro, (k + 1) * micro).to(accelerator.device)
            last = k == cfg.grad_accum_steps - 1
            with accelerator.no_sync(model) if not last else nullcontext():
                out = model(mb, step)
                # sum of token losses over the global token count; x world because DDP averages gradients
                loss = sum(out.weights[n] * out.terms[n].sum / max(counts[n], 1) for n in names)
                for i, n in enumerate(names):
                    stats[2 * i] += out.terms[n].sum.detach().double()
                    stats[2 * i + 1] += out.terms[n].correct.double()
                stats[-1] += mb.attention_mask.sum()
                accelerator.backward(loss * world)
        stats = accelerator.reduce(stats, reduction="sum")
        if not torch.isfinite(stats).all():
            sums = ", ".join(f"{n} sum {stats[2 * i].item()}" for i, n in enumerate(names))
            raise NonFiniteLossError(
                f"non-finite loss at step {step + 1} ({sums}); "
                "lower lr/decoder_lr, use precision=fp32 or bf16 instead of fp16, or check the data"
            )
        grad_norm = accelerator.clip_grad_norm_(params, cfg.max_grad_norm) if cfg.max_grad_norm > 0 else None
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

        done = step + 1
        now = time.perf_counter()
        record: dict = {"step": done}
        for i, n in enumerate(names):
            record[f"{n}_loss"] = stats[2 * i].item() / max(counts[n], 1)
            record[f"{n}_acc"] = stats[2 * i + 1].item() / max(counts[n], 1)
        record.update(
            lr=scheduler.get_last_lr()[0],
            grad_norm=float(grad_norm) if grad_norm is not None else None,
            tokens=int(stats[-1].item()),
            step_time=now - t_last,
        )
        t_last = now
        if accelerator.is_main_process:
            if done % cfg.log_every == 0 or done == cfg.steps:
                with open(run_dir / "metrics.jsonl", "a") as f:
                    f.write(json.dumps(record) + "\n")
            bar.set_postfix({k: f"{v:.3f}" for k, v in record.items() if k.endswith(("_loss", "mrc_acc"))})
            bar.update(1)
        if (cfg.save_every and done % cfg.save_every == 0) or done == cfg.steps:
            save_checkpoint(accelerator, run_dir, done)
    bar.close()

    # --- save ---
    if cfg.export and accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        info = run_embedding_info(cfg, tokenizer, setup.eos_id, cfg.steps)
        export_causal_lm(unwrapped.llm, tokenizer, run_dir / "model", info)
        accelerator.print(f"exported the trained model to {run_dir / 'model'}")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return run_dir


def export_run(run_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Export the latest checkpoint of a run folder as a plain causal-LM folder (default <run>/model)."""
    run_dir = Path(run_dir)
    ckpt = find_checkpoint(run_dir)
    if ckpt is None or not (run_dir / "config.yaml").exists():
        raise FileNotFoundError(f"{run_dir} holds no complete checkpoint and config.yaml to export")
    cfg = load_config(run_dir / "config.yaml")
    setup = build(cfg)
    state = _load_model_state(ckpt)
    missing, unexpected = setup.model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("lm_head.weight")]  # tied weights are saved once
    if missing or unexpected:
        raise RuntimeError(
            f"checkpoint {ckpt} does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    info = run_embedding_info(cfg, setup.tokenizer, setup.eos_id, checkpoint_step(ckpt))
    return export_causal_lm(setup.model.llm, setup.tokenizer, out_dir or run_dir / "model", info)


def run_embedding_info(cfg: TrainConfig, tokenizer, eos_id: int, steps: int) -> dict:
    """unimae.json of an exported run: EOS pooling for UniMAE, bidirectional mean pooling for MNTP."""
    info = embedding_info(
        tokenizer, eos_id, cfg.max_length, trained_from=cfg.model, objective=cfg.objective, steps=steps
    )
    if cfg.objective == "mntp":
        info.update(pooling="mean", attention="bidirectional")
    return info


def _load_model_state(ckpt: Path) -> dict:
    sf = ckpt / "model.safetensors"
    if sf.exists():
        from safetensors.torch import load_file

        return load_file(str(sf))
    return torch.load(ckpt / "pytorch_model.bin", map_location="cpu", weights_only=True)


def _trim_metrics(path: Path, upto: int) -> None:
    """Drop metric lines past the resumed step (they are recomputed)."""
    if not path.exists():
        return
    keep = [
        line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= upto
    ]
    path.write_text("".join(line + "\n" for line in keep))
