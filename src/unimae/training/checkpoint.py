"""Training checkpoints that prove themselves: full training state plus a manifest of sha256 hashes.

A checkpoint (model = LLM + tiny decoder, optimizer, scheduler, RNG states) is written into
``checkpoint.tmp``; ``manifest.json`` (the step, and the size and sha256 of every other file) is
written LAST, so it is the completeness marker; the folder is then swapped in for ``checkpoint`` with
``unimae.io.replace_dir``, so there is no moment without a complete checkpoint.

Resuming and loading verify the manifest first and refuse, naming the file, when a file is missing,
truncated or changed (:class:`CheckpointError`); that includes the RNG-state files. A verified
checkpoint that has no RNG state for a process (resumed with more processes than wrote it) or one the
installed torch cannot read still resumes, with a warning naming the file: only random draws such as
dropout then differ from an uninterrupted run (masks and data order are pure functions of the step).
Checkpoints written before manifests (``state.json`` only) load with a warning that they are unverified.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import torch

from unimae.errors import UserError
from unimae.io import atomic_write_json, fsync_tree, replace_dir, sha256_file

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint"
MANIFEST = "manifest.json"
LEGACY_MARKER = "state.json"  # checkpoints written before manifests: {"step": N}
RNG_STATE = "random_states_{rank}.pkl"  # Accelerate's RNG-state file of each process


class CheckpointError(UserError):
    """A checkpoint file is missing, truncated or changed; the message names the file and what to do."""


def save_checkpoint(accelerator, run_dir: Path, step: int) -> Path:
    """Save the full training state after ``step`` optimizer steps; returns the checkpoint folder."""
    final, tmp = run_dir / CHECKPOINT, run_dir / f"{CHECKPOINT}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_manifest(tmp, step)
        fsync_tree(tmp)
        replace_dir(tmp, final)
    accelerator.wait_for_everyone()
    return final


def write_manifest(folder: Path, step: int) -> Path:
    """``folder/manifest.json``: the step and the size and sha256 of every file under ``folder``."""
    files = {
        f.relative_to(folder).as_posix(): {"bytes": f.stat().st_size, "sha256": sha256_file(f)}
        for f in sorted(folder.rglob("*"))
        if f.is_file() and f.name != MANIFEST
    }
    return atomic_write_json(folder / MANIFEST, {"step": step, "files": files})


def find_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run folder (it has a manifest, or a legacy marker), or None.

    ``checkpoint.old`` is where ``replace_dir`` keeps the previous one on systems without an atomic
    folder exchange, if a run was killed mid-swap.
    """
    for name in (CHECKPOINT, f"{CHECKPOINT}.old"):
        path = Path(run_dir) / name
        if (path / MANIFEST).is_file() or (path / LEGACY_MARKER).is_file():
            return path
    return None


def checkpoint_step(path: Path) -> int:
    """The step recorded in a checkpoint's manifest (or legacy marker); not verified."""
    return int(_read_marker(path)["step"])


def check_step(ckpt: Path, step: int, planned: int) -> int:
    """``step`` if a run planned for ``planned`` optimizer steps can have reached it (``0 < step <=
    planned``); else :class:`CheckpointError`: the manifest's step was edited or damaged (its own bytes are
    not hashed), and resuming or exporting from it would mislabel the weights."""
    if not 0 < step <= planned:
        raise CheckpointError(
            f"{Path(ckpt) / MANIFEST} says step {step}, but the run's config.yaml plans optim.steps={planned}; "
            "a checkpoint's step is between 1 and that: the manifest was edited or damaged. Restore the "
            "checkpoint from a copy, or start the run again without --resume"
        )
    return step


def verify_checkpoint(path: Path) -> int:
    """Check every file of a checkpoint against its manifest; returns the step.

    Raises :class:`CheckpointError` naming the first file that is missing, truncated or changed, or a
    manifest that is not valid. A legacy checkpoint (no manifest) is returned unverified, with a warning.
    """
    path = Path(path)
    if not (path / MANIFEST).is_file():
        step = checkpoint_step(path)
        log.warning(
            "%s has no %s (written before checkpoints had one): its files are NOT verified", path, MANIFEST
        )
        return step
    manifest = _read_marker(path)
    for name, want in manifest["files"].items():
        _verify_file(path, name, want)
    return int(manifest["step"])


def _verify_file(ckpt: Path, name: str, want: dict) -> None:
    f = ckpt / name
    advice = (
        f"the checkpoint {ckpt} is damaged; restore it from a copy, or start the run again "
        "without --resume in a new output_dir"
    )
    if not f.is_file():
        raise CheckpointError(f"{f} is missing (listed in {MANIFEST}): {advice}")
    size = f.stat().st_size
    if size != want["bytes"]:
        raise CheckpointError(f"{f} has {size} bytes, {MANIFEST} says {want['bytes']} (truncated?): {advice}")
    if sha256_file(f) != want["sha256"]:
        raise CheckpointError(f"{f} does not match its sha256 in {MANIFEST} (changed after saving): {advice}")


def _read_marker(path: Path) -> dict:
    """The manifest (or legacy marker) as a dict with an int ``step``; CheckpointError naming it if not."""
    marker = path / MANIFEST if (path / MANIFEST).is_file() else path / LEGACY_MARKER
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
        if isinstance(data["step"], bool) or not isinstance(data["step"], int):
            raise ValueError(f"step {data['step']!r} is not a whole number")
        if marker.name == MANIFEST and not all(
            isinstance(v, dict) and {"bytes", "sha256"} <= v.keys() for v in data["files"].values()
        ):
            raise ValueError("a file entry lacks bytes or sha256")
    except FileNotFoundError:
        raise CheckpointError(f"{path} has no {MANIFEST}: it is not a complete checkpoint") from None
    except (UnicodeDecodeError, ValueError, TypeError, KeyError, AttributeError) as e:
        raise CheckpointError(
            f"{marker} is not a valid checkpoint manifest ({type(e).__name__}: {e}); the checkpoint cannot "
            "be verified: restore it from a copy, or start the run again without --resume"
        ) from None
    return data


def rng_state_problem(ckpt: Path, rank: int) -> str | None:
    """Why process ``rank`` cannot restore its RNG state from ``ckpt`` (None: it can).

    Accelerate skips an unreadable RNG state silently; the recipe warns with this message instead.
    """
    f = Path(ckpt) / RNG_STATE.format(rank=rank)
    if not f.is_file():
        return f"{f} is missing (the checkpoint was written by fewer processes)"
    try:
        torch.load(f, map_location="cpu", weights_only=False)  # our own run's pickle, as Accelerate loads it
    except Exception as e:  # noqa: BLE001 - any unpickling failure means the same thing here
        return f"{f} cannot be read ({type(e).__name__}: {e})"
    return None


def load_model_state(ckpt: Path) -> dict[str, torch.Tensor]:
    """The objective's state dict (LLM + tiny decoder) saved in a checkpoint folder."""
    sf = Path(ckpt) / "model.safetensors"
    if sf.exists():
        from safetensors.torch import load_file

        return load_file(str(sf))
    return torch.load(Path(ckpt) / "pytorch_model.bin", map_location="cpu", weights_only=True)
