"""Named training metrics: per-step sums over micro-batches and processes, and the metrics.jsonl file."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from unimae.io import atomic_write_text, iter_jsonl
from unimae.objective.model import TrainOutput


class StepMetrics:
    """Named sums over one optimizer step's micro-batches on this process, summed across processes.

    For each loss term ``n`` of the objective: ``n_loss`` (summed token losses) and ``n_acc`` (tokens
    predicted right); plus ``tokens`` (real tokens seen). Sums are float64 so they add up exactly
    enough; ``record`` divides them by the global batch's target counts.
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
    (``counts``: its target tokens per term), and the tokens seen."""
    record: dict = {"step": done}
    for name in sorted(counts):
        record[f"{name}_loss"] = sums[f"{name}_loss"] / max(counts[name], 1)
        record[f"{name}_acc"] = sums[f"{name}_acc"] / max(counts[name], 1)
    record["tokens"] = int(sums["tokens"])
    return record


def trim_metrics(path: Path, upto: int) -> None:
    """Drop metric lines past the resumed step ``upto`` (they are computed again)."""
    if not path.exists():
        return
    keep = [record for _, record in iter_jsonl(path) if record["step"] <= upto]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in keep))
