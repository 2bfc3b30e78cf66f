"""UniMAE: train a decoder-only LLM so that its EOS state is a sentence embedding, while it still generates."""

from unimae.encoding.encoder import Encoder
from unimae.encoding.loading import DEFAULT_MODEL, ModelLoadError, load_causal_lm
from unimae.training.config import TrainConfig, load_config

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


def train(config: TrainConfig, resume: bool = False):
    """Train UniMAE, then export ``run_dir/model`` if ``config.export`` (see unimae.pipeline)."""
    from unimae.pipeline import train_and_export

    return train_and_export(config, resume=resume)
