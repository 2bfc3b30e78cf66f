"""Train, then export: what ``unimae train`` runs.

    from unimae.pipeline import train_and_export
    run_dir = train_and_export(load_config("default"))   # run_dir/model when cfg.export

Training writes checkpoints only; the export rebuilds the model from the last checkpoint, the same path
``unimae export RUN`` takes, so a sharded or resumed run exports exactly like a plain one.
"""

from __future__ import annotations

import logging
from pathlib import Path

from accelerate import PartialState

from unimae.export import export
from unimae.export.target import check_export_target
from unimae.training.config import TrainConfig
from unimae.training.loop import train

log = logging.getLogger(__name__)


def train_and_export(cfg: TrainConfig, resume: bool = False) -> Path:
    """Train as ``cfg`` says (``resume``: continue its run folder), then export ``run_dir/model`` if
    ``cfg.export``. Returns the run folder. Under several processes only the main one exports.
    The export's target is checked before training (an ``ExportTargetError`` then costs no training)."""
    if cfg.export:
        check_export_target(cfg.output_dir, Path(cfg.output_dir) / "model", "causal-lm")
    run_dir = Path(train(cfg, resume=resume))
    if cfg.export and PartialState().is_main_process:
        model_dir = export(run_dir)
        print(f"exported the trained model to {model_dir}")
    return run_dir
