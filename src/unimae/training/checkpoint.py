"""Atomic training checkpoints: model (LLM + tiny decoder), optimizer, scheduler, RNG states and step.

A checkpoint is written into ``checkpoint.tmp`` and only then swapped in for ``checkpoint``, with
``state.json`` written last as the completeness marker, so a run killed at any moment leaves one
complete checkpoint behind (``checkpoint`` or, during the swap, ``checkpoint.old``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

CHECKPOINT = "checkpoint"


def save_checkpoint(accelerator, run_dir: Path, step: int) -> Path:
    """Save the full training state after ``step`` optimizer steps; returns the checkpoint folder."""
    final, tmp, old = run_dir / CHECKPOINT, run_dir / f"{CHECKPOINT}.tmp", run_dir / f"{CHECKPOINT}.old"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / "state.json").write_text(json.dumps({"step": step}))
        _fsync_dir(tmp)
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def find_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run folder, or None."""
    for name in (CHECKPOINT, f"{CHECKPOINT}.old"):
        path = run_dir / name
        if (path / "state.json").is_file():
            return path
    return None


def checkpoint_step(path: Path) -> int:
    return int(json.loads((path / "state.json").read_text())["step"])


def _fsync_dir(path: Path) -> None:
    for f in path.iterdir():
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
