"""The typed configuration of a training run: a few top-level fields and five sections, each passed whole.

    TrainConfig
      model, output_dir, seed, precision, model_dtype, gradient_checkpointing, save_every, log_every, export
      data:      DataConfig       what is read (the corpus, how many texts, tokens per text)
      objective: ObjectiveConfig  what is trained (unimae.objective.config): losses, masks, weights, prompt
      decoder:   DecoderConfig    the training-only tiny decoder (unimae.objective.config)
      optim:     OptimConfig      steps, batch, learning rates, schedule, clipping
      lora:      LoraConfig       LoRA adapters instead of a full fine-tune
      contrastive, distill        terms on the embedding state beyond the paper (off by default)

A run reads a YAML file (optional), applies ``key=value`` overrides, validates, and saves the resolved
config as ``config.yaml`` in its run folder. Every field's type and range is checked on construction,
whatever the route (Python, YAML, command line); a ``ConfigError`` names the field (``optim.lr``).

Older runs wrote one flat mapping (``lr: 2e-4``, ``lora: true``, ``decoder_rope: false``); ``LEGACY``
(``unimae.config_names``) maps each flat name to its place, so old ``config.yaml`` files, the ``training`` records inside committed
result files and flat overrides (``unimae train lr=5e-5 lora=true``) still load. Dotted names
(``optim.lr=5e-5``) and nested YAML sections work everywhere too.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import model_validator
from pydantic.dataclasses import dataclass
from pydantic_core import ArgsKwargs

from unimae.config_names import LEGACY, flatten
from unimae.errors import ConfigError
from unimae.io import atomic_write_text
from unimae.objective.config import ContrastiveConfig, DecoderConfig, DistillConfig, ObjectiveConfig
from unimae.records import Field, Real, StrictBool, StrictInt, StrictStr, record_config, user_errors

__all__ = [
    "ConfigError",
    "DataConfig",
    "LoraConfig",
    "OptimConfig",
    "TrainConfig",
    "load_config",
    "recipes",
]

Precision = Literal["fp32", "bf16", "fp16"]
NonEmpty = Annotated[StrictStr, Field(pattern=r"\S")]
AtLeast0 = Annotated[StrictInt, Field(ge=0)]
AtLeast1 = Annotated[StrictInt, Field(ge=1)]


@user_errors(ConfigError)
@dataclass(config=record_config(extra="forbid"))
class DataConfig:
    """The training text and how much of it a step reads. Unknown keys are refused (as in every section)."""

    source: NonEmpty = "wiki"
    """'wiki' (the default Wikipedia sentences, train split), a .txt (one text per line), a .jsonl, or 'hf:NAME[:SPLIT]'."""
    text_field: NonEmpty = "text"
    """Field holding the text in .jsonl files and Hugging Face datasets."""
    max_texts: AtLeast1 | None = None
    """Use only the first N texts of the corpus (None: all)."""
    max_length: Annotated[StrictInt, Field(ge=4)] = 64
    """Tokens per training text including the appended EOS (longer texts are truncated)."""


@user_errors(ConfigError)
@dataclass(config=record_config(extra="forbid"))
class OptimConfig:
    """Steps, batch and the AdamW optimizer with its schedule. Unknown keys are refused."""

    steps: AtLeast1 = 100
    """Optimizer steps."""
    batch_size: AtLeast1 = 16
    """Texts per optimizer step, over all processes and accumulation steps (the global batch)."""
    grad_accum_steps: AtLeast1 = 1
    """Micro-batches per optimizer step; batch_size must divide by grad_accum_steps * processes."""
    lr: Annotated[Real, Field(gt=0.0)] = 5e-5
    """Peak learning rate of the LLM (or of its LoRA adapters). Lee STS EOS, default model, 100 steps: 0.47 with 2e-5, 0.55 with 5e-5."""
    decoder_lr: Annotated[Real, Field(ge=0.0)] = 1e-3
    """Peak learning rate of the tiny decoder, which starts from scratch."""
    weight_decay: Annotated[Real, Field(ge=0.0)] = 0.0
    """AdamW weight decay."""
    warmup_steps: AtLeast0 = 5
    """Linear warmup steps."""
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "constant_with_warmup"
    """Schedule after warmup: linear, cosine, constant (no warmup) or constant_with_warmup."""
    max_grad_norm: Annotated[Real, Field(ge=0.0)] = 1.0
    """Gradient clipping (0 disables)."""

    @model_validator(mode="after")
    def _divisible(self) -> OptimConfig:
        if self.batch_size % self.grad_accum_steps:
            raise ConfigError(
                f"batch_size={self.batch_size} must be divisible by grad_accum_steps={self.grad_accum_steps}"
            )
        return self


@user_errors(ConfigError)
@dataclass(config=record_config(extra="forbid"))
class LoraConfig:
    """LoRA adapters (peft) instead of training all LLM weights; the export merges them. Unknown keys are
    refused."""

    enabled: StrictBool = False
    """Train LoRA adapters instead of all LLM weights. The tiny decoder is always trained in full. The default recipe: true with lr 2e-4, which kept choice accuracy where a full fine-tune lost it."""
    r: AtLeast1 = 16
    """Rank of the LoRA adapters."""
    alpha: AtLeast1 = 32
    """LoRA scaling numerator (the adapters' update is scaled by alpha / r)."""
    dropout: Annotated[Real, Field(ge=0.0, lt=1.0)] = 0.05
    """Dropout on the LoRA adapters' input."""
    target_modules: StrictStr | Annotated[list[StrictStr], Field(min_length=1)] = "all-linear"
    """Modules that get adapters: 'all-linear' or a list of module names (e.g. [q_proj, v_proj])."""


SECTIONS = {
    "data": DataConfig,
    "objective": ObjectiveConfig,
    "decoder": DecoderConfig,
    "optim": OptimConfig,
    "lora": LoraConfig,
    "contrastive": ContrastiveConfig,
    "distill": DistillConfig,
}


def _section_dict(value: Any) -> Any:
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value


def upgrade(values: dict[str, Any]) -> dict[str, Any]:
    """Config values in any accepted spelling (flat legacy names, ``section.field``, nested sections)
    as TrainConfig's nested form; later keys win. ConfigError for a name that is none of these."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        value = _section_dict(value)
        if key in SECTIONS and isinstance(value, dict):
            out[key] = {**out.get(key, {}), **value}
            continue
        path = LEGACY.get(key, key)
        section, dot, name = path.partition(".")
        if dot and section in SECTIONS:
            out[section] = {**out.get(section, {}), name: value}
        elif key in TOP_LEVEL:
            out[key] = value
        else:
            raise ConfigError(
                f"unknown config field(s) [{key!r}]; known: {sorted(TOP_LEVEL)}, sections "
                f"{sorted(SECTIONS)} (e.g. optim.lr) and the flat names of older configs (e.g. lr)"
            )
    return out


@user_errors(ConfigError)
@dataclass(config=record_config(extra="forbid"))
class TrainConfig:
    """One training run's settings (a YAML file's keys, `unimae train --FIELD` options), saved as config.yaml.

    Unknown keys are refused, here and in every section: a config is written by hand, and a misspelt knob
    must not train with its default unnoticed. The flat names of older configs are not unknown: they are
    mapped to their sections through ``unimae.config_names.LEGACY`` before the check.
    """

    model: NonEmpty = "smollm2-135m"
    """A Hugging Face causal-LM id, a local model folder, a .gguf file, or an alias ('smollm2-135m', 'gemma3-270m', ...)."""
    output_dir: NonEmpty = "runs/default"
    """Run folder: config.yaml, metrics.jsonl, checkpoint/ and the exported model/."""
    seed: AtLeast0 = 42
    """Seeds data order, masks and initialisation."""
    data: DataConfig = field(default_factory=DataConfig)
    """The training text."""
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    """What is trained."""
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    """The tiny decoder (objective unimae)."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """Steps, batch and optimizer."""
    lora: LoraConfig = field(default_factory=LoraConfig)
    """LoRA adapters."""
    contrastive: ContrastiveConfig = field(default_factory=ContrastiveConfig)
    """A contrastive term on the embedding state (off by default; not in the paper)."""
    distill: DistillConfig = field(default_factory=DistillConfig)
    """Distillation from the base model's prompt embedding (off by default; not in the paper)."""
    precision: Precision = "fp32"
    """fp32, bf16 or fp16 (mixed precision through Accelerate)."""
    model_dtype: Precision = "fp32"
    """Dtype the LLM's weights are loaded in: fp32, bf16 or fp16. Trainable parameters (LoRA adapters, tiny decoder) stay fp32; bf16/fp16 need lora.enabled."""
    gradient_checkpointing: StrictBool = False
    """Recompute LLM activations in backward to save memory."""
    save_every: AtLeast0 = 50
    """Write a checkpoint every N steps (and at the end). 0: only at the end."""
    log_every: AtLeast1 = 1
    """Write a metrics line every N steps."""
    export: StrictBool = True
    """Export the final model to <output_dir>/model when training ends."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form notes saved with the run."""

    @model_validator(mode="before")
    @classmethod
    def _upgrade(cls, data: Any) -> Any:
        if isinstance(data, ArgsKwargs):
            return ArgsKwargs(data.args or (), upgrade(dict(data.kwargs or {})))
        return upgrade(data) if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.model_dtype != "fp32" and not self.lora.enabled:
            raise ConfigError(
                f"model_dtype={self.model_dtype} needs lora.enabled=true: a full fine-tune keeps its trained "
                "weights in fp32 (use precision=bf16 for mixed precision instead)"
            )
        if self.objective.name == "mntp" and self.decoder != DecoderConfig():
            raise ConfigError("the decoder section is for objective unimae: MNTP has no tiny decoder")
        if self.objective.name == "mntp" and (self.contrastive.weight or self.distill.weight):
            raise ConfigError("contrastive and distill are terms of objective unimae (weight 0 for mntp)")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def flat(self) -> dict[str, Any]:
        """Every field as ``{dotted name: value}`` (``optim.lr``; top-level fields by their name)."""
        return flatten(self.to_dict())

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))


TOP_LEVEL = {f.name for f in dataclasses.fields(TrainConfig)} - set(SECTIONS)


_EXPONENT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")


def _yaml_floats(values: Any) -> Any:
    """Numbers written as '1e-3', which YAML 1.1 (PyYAML) reads as a string, as floats (recursively)."""
    if isinstance(values, dict):
        return {k: _yaml_floats(v) for k, v in values.items()}
    if isinstance(values, str) and _EXPONENT.fullmatch(values):
        return float(values)
    return values


RECIPES = Path(__file__).resolve().parents[1] / "configs"  # recipes shipped inside the package


def recipes() -> list[str]:
    """Names of the shipped recipes (``unimae train --config NAME``): default, paper, ..."""
    return sorted(p.stem for p in RECIPES.glob("*.yaml"))


def config_path(name_or_path: str | Path) -> Path:
    """A config file's path: an existing file as given, else a shipped recipe's name (``default``,
    ``paper``, ``paper-llama-3.2-1b``); FileNotFoundError naming both when it is neither."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    if path.exists():  # a folder, a FIFO, a device: not "not found"
        from unimae.io import file_kind

        raise ConfigError(f"config file {path} is {file_kind(path)}, not a regular file")
    shipped = RECIPES / f"{name_or_path}.yaml"
    if isinstance(name_or_path, str) and "/" not in name_or_path and shipped.is_file():
        return shipped
    raise FileNotFoundError(
        f"config file {path} not found (shipped recipes, by name: {', '.join(recipes())})"
    )


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping of a config YAML file or shipped recipe (any accepted spelling); ConfigError naming the
    file if it is not valid YAML or not a mapping, FileNotFoundError if it does not exist."""
    path = config_path(path)
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: must hold a mapping of config fields, got {type(loaded).__name__}")
    return _yaml_floats(loaded)


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """A validated TrainConfig from an optional YAML file (or shipped recipe name) plus typed overrides
    (overrides win).

    Both may use any accepted spelling (nested sections, ``section.field``, flat legacy names). Raises
    ``ConfigError`` (naming the file) for a file that is not a mapping of known fields of the right
    types, ``FileNotFoundError`` for a missing one.
    """
    values = {} if path is None else read_config_file(path)
    where = "" if path is None else f"{path}: "
    try:
        return TrainConfig(**_merge_into(upgrade(values), overrides or {}))
    except ConfigError as e:
        raise ConfigError(f"{where}{e}") from None


def _merge_into(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``overrides`` (any spelling) merged over ``base`` (nested), section by section."""
    merged = dict(base)
    for key, value in upgrade(overrides).items():
        merged[key] = {**base.get(key, {}), **value} if key in SECTIONS else value
    return merged
