"""The training recipe (torchtune's shape): setup -> train (step, log, save) -> cleanup, on Accelerate.

The same code runs on CPU, one GPU, or several processes (``accelerate launch`` / ``torchrun``).
Every process builds the same global batch (a pure function of the step) and takes its slice, so
N processes with the same ``batch_size`` compute the same losses as one. The objective owns the loss
(``out.loss``); this file only moves batches, gradients, metrics and checkpoints. Training writes
checkpoints, never an exported model: ``unimae.pipeline.train_and_export`` exports from the checkpoint.

    unimae train --config default steps=100
    accelerate launch --num_processes 2 -m unimae.cli train --config default
"""

from __future__ import annotations

import logging
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from accelerate.utils import DistributedType
from tqdm.auto import tqdm
from transformers import get_scheduler

from unimae.data.corpus import load_texts
from unimae.encoding.pooling import PromptTokens
from unimae.errors import UserError
from unimae.io import append_jsonl, check_writable, disk_errors
from unimae.llm import base_weights_fingerprint
from unimae.objective.model import UniMAEBatch
from unimae.tokens import pad_token_id
from unimae.training.build import build, make_optimizer
from unimae.training.checkpoint import (
    check_step,
    checkpoint_step,
    find_checkpoint,
    rng_state_problem,
    save_checkpoint,
    verify_checkpoint,
)
from unimae.training.config import ConfigError, TrainConfig, load_config
from unimae.training.data import (
    ReadView,
    needed_examples,
    prompted_corpus,
    read_corpus,
    step_batches,
    tokenize_corpus,
)
from unimae.training.metrics import StepMetrics, bar_postfix, non_finite_losses, step_record, trim_metrics
from unimae.training.teacher import TeacherKey, teacher_vectors

log = logging.getLogger(__name__)

RESUME_AFTER_DISK_ERROR = (
    "the last complete checkpoint is kept: free space (or fix the folder) and run `unimae train --resume`"
)
# Fields that may differ between a run and its resumption.
RESUMABLE_CHANGES = {"optim.steps", "save_every", "log_every", "export", "output_dir"}


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss."""


def resolve_resume(cfg: TrainConfig, run_dir: Path, resume: bool) -> Path | None:
    """The checkpoint to resume from (None: a fresh run), checked before anything is loaded or written.

    Refuses (one-line ``UserError``s): a config that changed what is trained (only ``RESUMABLE_CHANGES``
    may differ); a checkpoint step outside ``1..optim.steps`` of the saved config (an edited manifest);
    and ``optim.steps`` below the checkpoint's step. A run may be extended (more steps) or resumed at its
    last step (nothing left to train; it is exported again); it is never cut below its checkpoint, so
    ``config.yaml``, the checkpoint and the export always agree on the step count.
    """
    ckpt = find_checkpoint(run_dir)
    if not resume:
        if ckpt is not None:
            raise FileExistsError(
                f"{run_dir} already holds a checkpoint: pass --resume to continue it, or choose another output_dir"
            )
        return None
    saved_path = run_dir / "config.yaml"
    if ckpt is None or not saved_path.exists():
        raise FileNotFoundError(f"--resume: no complete checkpoint in {run_dir}")
    saved_cfg = load_config(saved_path)
    saved = saved_cfg.flat()
    changed = sorted(k for k, v in cfg.flat().items() if saved[k] != v and k not in RESUMABLE_CHANGES)
    if changed:
        detail = ", ".join(f"{k}: {saved[k]!r} -> {cfg.flat()[k]!r}" for k in changed[:3])
        raise ConfigError(
            f"--resume with a config that differs from the run's {saved_path} in {detail}"
            f"{' ...' if len(changed) > 3 else ''}; only {sorted(RESUMABLE_CHANGES)} may change on resume"
        )
    step = check_step(ckpt, checkpoint_step(ckpt), saved_cfg.optim.steps)
    if cfg.optim.steps < step:
        raise ConfigError(
            f"--resume with optim.steps={cfg.optim.steps}, but the checkpoint in {run_dir} is at step {step}: "
            f"a resumed run can go on (optim.steps >= {step}), not end before its checkpoint"
        )
    return ckpt


class Recipe:
    """One training run: ``setup()``, ``train()`` (``step`` -> ``log`` -> ``save``), ``cleanup()``."""

    def __init__(self, cfg: TrainConfig, resume: bool = False):
        self.cfg = cfg
        self.run_dir = Path(cfg.output_dir)
        check_writable(self.run_dir, folder=True)  # a file there, a read-only disk: before any work
        self.ckpt = resolve_resume(cfg, self.run_dir, resume)
        self.start = 0

    # --- setup ------------------------------------------------------------------------------------

    def setup(self) -> None:
        """Data, objective, optimizer and scheduler, prepared by Accelerate; restores a checkpoint."""
        cfg = self.cfg
        data = cfg.data
        texts = load_texts(data.source, split="train", text_field=data.text_field, max_texts=data.max_texts)
        built = build(cfg)
        self.objective, self.tokenizer = built.model, built.tokenizer  # the objective, never DDP-wrapped
        self.corpus = tokenize_corpus(texts, self.tokenizer, data.max_length, built.eos_id)
        plain = self.corpus
        prompt = cfg.objective.prompt
        self.prompt = None if prompt is None else PromptTokens.of(self.tokenizer, prompt)
        if self.prompt is not None:  # the prompt's tokens are context: text_only() drops them as targets
            self.corpus = prompted_corpus(
                self.corpus, self.prompt, data.max_length, built.eos_id, built.bos_id
            )
        self.has_bos = built.bos_id is not None
        self.pad_id = pad_token_id(self.tokenizer, built.eos_id)
        self.accelerator = Accelerator(
            mixed_precision={"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[cfg.precision],
            kwargs_handlers=[
                DistributedDataParallelKwargs(find_unused_parameters=self.objective.find_unused_parameters)
            ],
        )
        acc = self.accelerator
        if acc.distributed_type == DistributedType.DEEPSPEED:
            # The engine divides each backward by its own accumulation count and steps inside backward,
            # while this loop backprops exact shares of the global batch and steps once; untested here.
            raise UserError(
                "DeepSpeed is not supported by unimae's training loop (its engine rescales and steps the "
                "accumulated gradients itself); use DDP or FSDP (configs/accelerate/), see docs/large-models.md"
            )
        opt = cfg.optim
        micro_total = acc.num_processes * opt.grad_accum_steps
        if opt.batch_size % micro_total:
            raise ValueError(
                f"batch_size={opt.batch_size} must be divisible by processes x grad_accum_steps = {micro_total}"
            )
        self.micro = opt.batch_size // micro_total
        with acc.main_process_first():  # the main process fills the teacher cache, the others read it
            self.read = self.read_view(plain, built)
        optimizer = make_optimizer(self.objective, cfg)
        self.scheduler = get_scheduler(
            opt.lr_scheduler, optimizer, num_warmup_steps=opt.warmup_steps, num_training_steps=opt.steps
        )
        self.model, self.optimizer = acc.prepare(self.objective, optimizer)
        acc.register_for_checkpointing(self.scheduler)
        if self.ckpt is not None:
            self._restore(self.ckpt)
        if acc.is_main_process:
            with disk_errors(self.run_dir):
                self.run_dir.mkdir(parents=True, exist_ok=True)
                cfg.save(self.run_dir / "config.yaml")
                trim_metrics(self.run_dir / "metrics.jsonl", self.start)
        acc.wait_for_everyone()
        acc.print(
            f"{len(self.corpus)} training texts, {cfg.optim.steps} steps x {cfg.optim.batch_size} texts, "
            f"{acc.num_processes} process(es)"
            + ("" if acc.distributed_type.value == "NO" else f", {acc.distributed_type.value}")
        )

    def read_view(self, plain: list[list[int]], built) -> ReadView | None:
        """The clean texts in the read template and their teacher vectors, when a term on the read state
        is trained (contrastive view 'read', distillation); None otherwise."""
        cfg, c = self.cfg, self.cfg.contrastive
        if not ((c.weight > 0 and c.view == "read") or cfg.distill.weight > 0):
            return None
        prompt = cfg.objective.read_prompt
        tokens = None if prompt is None else PromptTokens.of(self.tokenizer, prompt)
        read = ReadView(read_corpus(plain, tokens, cfg.data.max_length, built.eos_id, built.bos_id))
        if cfg.distill.weight > 0:
            read.teacher = self.teacher(plain, built)
        return read

    def teacher(self, plain: list[list[int]], built) -> torch.Tensor:
        """``(n_examples, d)`` teacher vectors, filled for the examples this run reads (cached)."""
        cfg = self.cfg
        llm = built.model.llm
        key = TeacherKey(cfg.model, base_weights_fingerprint(llm), cfg.distill.prompt, cfg.data.max_length)
        needed = needed_examples(len(plain), cfg.optim.batch_size, cfg.seed, 0, cfg.optim.steps)
        vectors = teacher_vectors(
            llm, self.tokenizer, [plain[i] for i in needed], key, built.bos_id is not None
        )
        teacher = torch.zeros(len(plain), vectors.shape[1])
        teacher[needed] = torch.from_numpy(vectors)
        return teacher

    def _restore(self, ckpt: Path) -> None:
        """Resume from a checkpoint after verifying its manifest (CheckpointError names a bad file)."""
        self.start = verify_checkpoint(ckpt)
        problem = rng_state_problem(ckpt, self.accelerator.process_index)
        if problem:  # Accelerate would skip it silently
            log.warning(
                "cannot restore the RNG state: %s; random draws such as dropout will differ from an "
                "uninterrupted run (masks and data order do not depend on it)",
                problem,
            )
        self.accelerator.load_state(str(ckpt))
        self.accelerator.print(f"resumed {self.run_dir} from step {self.start}")

    # --- train ------------------------------------------------------------------------------------

    def train(self) -> None:
        """Steps ``start .. steps-1``: one optimizer step, a metrics line, a checkpoint when due."""
        cfg, steps = self.cfg, self.cfg.optim.steps
        self.model.train()
        self.bar = tqdm(
            total=steps,
            initial=self.start,
            desc="unimae",
            disable=not self.accelerator.is_main_process,
            dynamic_ncols=True,
        )
        t_last = time.perf_counter()
        for step, batch in step_batches(
            self.corpus,
            cfg.optim.batch_size,
            cfg.seed,
            self.start,
            steps,
            self.pad_id,
            self.has_bos,
            self.read,
        ):
            if self.prompt is not None:
                batch = batch.text_only(len(self.prompt.prefix), len(self.prompt.suffix))
            record = self.step(step, batch)
            now = time.perf_counter()
            record["step_time"], t_last = now - t_last, now
            self.log(record)
            done = step + 1
            if (cfg.save_every and done % cfg.save_every == 0) or done == steps:
                self.save(done)

    def step(self, step: int, batch: UniMAEBatch) -> dict:
        """One optimizer step on this process's slice of the global ``batch``; returns its metrics line."""
        acc, cfg = self.accelerator, self.cfg.optim
        counts = self.objective.target_counts(batch, step)  # global normalisers, known on every process
        per_process = self.micro * cfg.grad_accum_steps
        local = batch.slice(acc.process_index * per_process, (acc.process_index + 1) * per_process)
        metrics = StepMetrics(acc.device)
        for k in range(cfg.grad_accum_steps):
            mb = local.slice(k * self.micro, (k + 1) * self.micro).to(acc.device)
            last = k == cfg.grad_accum_steps - 1
            with acc.no_sync(self.model) if not last else nullcontext():
                out = self.model(mb, step, counts)  # this slice's share of the global batch's loss
                metrics.add_output(out, mb.attention_mask.sum())
                # The shares add up to the loss of the whole batch, but DDP AVERAGES gradients over
                # processes: x world turns that average back into the gradient of the sum.
                acc.backward(out.loss * acc.num_processes)
        sums = metrics.reduce(acc)
        if non_finite_losses(sums):
            detail = ", ".join(
                f"{k.removesuffix('_loss')} sum {v}" for k, v in sums.items() if k.endswith("_loss")
            )
            raise NonFiniteLossError(
                f"non-finite loss at step {step + 1} ({detail}); "
                "lower lr/decoder_lr, use precision=fp32 or bf16 instead of fp16, or check the data"
            )
        params = [p for p in self.model.parameters() if p.requires_grad]
        grad_norm = acc.clip_grad_norm_(params, cfg.max_grad_norm) if cfg.max_grad_norm > 0 else None
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        record = step_record(step + 1, sums, counts)
        record.update(
            lr=self.scheduler.get_last_lr()[0], grad_norm=float(grad_norm) if grad_norm is not None else None
        )
        return record

    # --- log, save, cleanup -----------------------------------------------------------------------

    def log(self, record: dict) -> None:
        """Append the metrics line (every ``log_every`` steps and the last) and update the progress bar."""
        if not self.accelerator.is_main_process:
            return
        done = record["step"]
        if done % self.cfg.log_every == 0 or done == self.cfg.optim.steps:
            with disk_errors(self.run_dir / "metrics.jsonl", RESUME_AFTER_DISK_ERROR):
                append_jsonl(self.run_dir / "metrics.jsonl", record)
        self.bar.set_postfix(bar_postfix(record))
        self.bar.update(1)

    def save(self, done: int) -> Path:
        """Checkpoint the full training state after ``done`` steps (all processes take part); a disk error
        is one line (the previous complete checkpoint stays: the new one is swapped in only when whole)."""
        with disk_errors(self.run_dir / "checkpoint", RESUME_AFTER_DISK_ERROR):
            return save_checkpoint(self.accelerator, self.run_dir, done)

    def cleanup(self) -> None:
        self.bar.close()
        self.accelerator.wait_for_everyone()
        self.accelerator.end_training()


def train(cfg: TrainConfig, resume: bool = False) -> Path:
    """Train as configured (``resume``: continue the run folder's checkpoint); returns the run folder.

    Writes ``config.yaml``, ``metrics.jsonl`` and ``checkpoint/``; export with
    ``unimae.pipeline.train_and_export`` or ``unimae export RUN``.
    """
    recipe = Recipe(cfg, resume)
    recipe.setup()
    try:
        recipe.train()
    finally:  # a failed run's progress bar is drawn before its error, not after it
        if getattr(recipe, "bar", None) is not None:
            recipe.bar.close()
    recipe.cleanup()
    return recipe.run_dir
