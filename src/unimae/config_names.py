"""The flat names of older configs and result files, and where each field is in today's nested config.

One table (``LEGACY``), used both ways: training reads older flat ``config.yaml`` files and flat overrides
(``unimae train lr=5e-5``) through it (``unimae.training.config.upgrade``), and evaluation records a run's
config in result files under these names (``flat_names``). It lives outside ``training/`` so that the
evaluation can read a run's config without importing training; tests/test_config.py checks that it names
every section of ``TrainConfig`` and gives every field of the ``optim`` section a flat name.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from unimae.objective.config import DecoderConfig, ObjectiveConfig

SECTION_NAMES = ("data", "objective", "decoder", "optim", "lora", "contrastive", "distill")
OPTIM_FIELDS = (
    "steps",
    "batch_size",
    "grad_accum_steps",
    "lr",
    "decoder_lr",
    "weight_decay",
    "warmup_steps",
    "lr_scheduler",
    "max_grad_norm",
)

# The flat names of older configs and result files -> the field's place now (one table, both ways).
LEGACY: dict[str, str] = {
    "data": "data.source",
    "text_field": "data.text_field",
    "max_texts": "data.max_texts",
    "max_length": "data.max_length",
    "objective": "objective.name",
    **{f"lora_{n}": f"lora.{n}" for n in ("r", "alpha", "dropout", "target_modules")},
    "lora": "lora.enabled",
    **{f"decoder_{f.name}": f"decoder.{f.name}" for f in dataclasses.fields(DecoderConfig)},
    **{f.name: f"objective.{f.name}" for f in dataclasses.fields(ObjectiveConfig) if f.name != "name"},
    **{name: f"optim.{name}" for name in OPTIM_FIELDS},
}
_FLAT_NAME = {path: name for name, path in LEGACY.items()}


def flatten(values: dict[str, Any]) -> dict[str, Any]:
    """A nested config mapping as ``{dotted name: value}``; a flat (older) one as it is."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key in SECTION_NAMES and isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def flat_names(values: dict[str, Any]) -> dict[str, Any]:
    """A config mapping (nested or flat) under the flat names of older configs, as result files and the
    report show it (``lr``, ``lora``, ``decoder_rope``); fields without a flat name keep the dotted one."""
    return {_FLAT_NAME.get(k, k): v for k, v in flatten(values).items()}
