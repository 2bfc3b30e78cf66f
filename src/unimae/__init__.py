"""UniMAE: train a decoder-only LLM so that its EOS state is a sentence embedding, while it still generates.

The names below load on first use (PEP 562), so ``import unimae.cli`` does not import torch: the command
line sets its OpenMP defaults (``unimae.cli.apply_thread_defaults``) before the OpenMP runtime loads.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from unimae.encoding.encoder import Encoder
    from unimae.encoding.loading import DEFAULT_MODEL, ModelLoadError, load_causal_lm
    from unimae.training.config import TrainConfig, load_config

_LAZY = {
    "Encoder": "unimae.encoding.encoder",
    "DEFAULT_MODEL": "unimae.encoding.loading",
    "ModelLoadError": "unimae.encoding.loading",
    "load_causal_lm": "unimae.encoding.loading",
    "TrainConfig": "unimae.training.config",
    "load_config": "unimae.training.config",
}

__all__ = [
    "Encoder",
    "DEFAULT_MODEL",
    "ModelLoadError",
    "load_causal_lm",
    "TrainConfig",
    "load_config",
    "train",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """``unimae.Encoder`` and the other public names, imported from their module on first use."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'unimae' has no attribute {name!r}")


def train(config: TrainConfig, resume: bool = False):
    """Train UniMAE, then export ``run_dir/model`` if ``config.export`` (see unimae.pipeline)."""
    from unimae.pipeline import train_and_export

    return train_and_export(config, resume=resume)
