"""Named training metrics: per-step sums over micro-batches and processes, and the metrics.jsonl file."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from unimae.io import atomic_write_text, iter_jsonl
from unimae.objective.model import TrainOutput

COUNT_SUFFIX = "/n"  # the count a diagnostic's sum is divided by (never written to metrics.jsonl)

# What the progress bar shows: losses, MRC accuracy beside its most-frequent-token baseline, and the
# decoder rows' mean cosine (a bag-of-words MRC shows as mrc_acc ~ mrc_acc_mft and mrc_row_cos ~ 1).
BAR_KEYS = (
    "mar_loss",
    "mrc_loss",
    "mntp_loss",
    "contrastive_loss",
    "distill_loss",
    "mrc_acc",
    "mrc_acc_mft",
    "mrc_row_cos",
)


class StepMetrics:
    """Named sums over one optimizer step's micro-batches on this process, summed across processes.

    For each loss term ``n`` of the objective: ``n_loss`` (summed token losses) and ``n_acc`` (tokens
    predicted right); for each diagnostic ``s`` of the objective (``TrainOutput.stats``): ``s`` and its
    count ``s/n``; plus ``tokens`` (real tokens seen). Sums are float64 so they add up exactly
    enough; ``step_record`` divides them by the global batch's target counts (diagnostics: by theirs).
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.sums: dict[str, torch.Tensor] = {}

    def add(self, name: str, value: torch.Tensor) -> None:
        value = value.detach().to(self.device, torch.float64)
        self.sums[name] = self.sums[name] + value if name in self.sums else value

    def add_output(self, out: TrainOutput, tokens: torch.Tensor) -> None:
        """Add one micro-batch: every term's loss sum and correct count, and its real tokens."""
        for name, term in out.terms.items():
            self.add(f"{name}_loss", term.sum)
            self.add(f"{name}_acc", term.correct)
        for name, (total, count) in out.stats.items():
            self.add(name, total)
            self.add(f"{name}{COUNT_SUFFIX}", count)
        self.add("tokens", tokens)

    def reduce(self, accelerator) -> dict[str, float]:
        """The sums of all processes, by name (one all-reduce; every process holds the same names)."""
        names = list(self.sums)
        total = accelerator.reduce(torch.stack([self.sums[n] for n in names]), reduction="sum")
        return dict(zip(names, total.tolist(), strict=True))


def non_finite_losses(sums: dict[str, float]) -> dict[str, float]:
    """The ``*_loss`` sums that are NaN or infinite (empty when training may go on)."""
    return {k: v for k, v in sums.items() if k.endswith("_loss") and not math.isfinite(v)}


def step_record(done: int, sums: dict[str, float], counts: dict[str, int]) -> dict:
    """The metrics line of step ``done``: each term's mean token loss and accuracy over the global batch
    (``counts``: its target tokens per term), each diagnostic's mean (``h_eos_norm``, ``mrc_acc_mft``,
    ``mrc_row_cos``, ``pos_norm``; see ``objective.model.decoder_stats``), and the tokens seen."""
    record: dict = {"step": done}
    for name in sorted(counts):
        record[f"{name}_loss"] = sums[f"{name}_loss"] / max(counts[name], 1)
        record[f"{name}_acc"] = sums[f"{name}_acc"] / max(counts[name], 1)
    for key in sorted(sums):
        if key.endswith(COUNT_SUFFIX):
            name = key.removesuffix(COUNT_SUFFIX)
            record[name] = sums[name] / sums[key] if sums[key] > 0 else None
    record["tokens"] = int(sums["tokens"])
    return record


def bar_postfix(record: dict) -> dict[str, str]:
    """The progress bar's fields of a metrics line (``BAR_KEYS`` that it has)."""
    return {k: f"{record[k]:.3f}" for k in BAR_KEYS if record.get(k) is not None}


def trim_metrics(path: Path, upto: int) -> None:
    """Drop metric lines past the resumed step ``upto`` (they are computed again)."""
    if not path.exists():
        return
    keep = [record for _, record in iter_jsonl(path) if record["step"] <= upto]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in keep))
