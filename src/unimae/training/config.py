"""The typed configuration of a UniMAE training run.

Every knob of the method and of the loop is a field with a documented default. A run reads a YAML
file (optional), applies ``key=value`` overrides from the command line, validates, and saves the
resolved config as ``config.yaml`` in its run folder. Every field's type and range is checked on
construction, whatever the route (Python, YAML file, command line): a ``ConfigError`` names the field.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from unimae.errors import UserError
from unimae.io import atomic_write_text

PRECISIONS = ("fp32", "bf16", "fp16")
SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")
CHOICES = {
    "objective": ("unimae", "mntp"),
    "head_precision": ("fp32", "bf16"),
    "precision": PRECISIONS,
    "model_dtype": PRECISIONS,
    "lr_scheduler": SCHEDULERS,
    "decoder_output_norm_init": ("ones", "llm"),
}
# TrainConfig fields that UniMAE takes as keyword arguments of the same name (``unimae_options``).
UNIMAE_OPTIONS = (
    "decoder_input_norm",
    "decoder_input_proj",
    "decoder_output_norm_init",
    "decoder_rope",
    "decoder_pos_lr_mult",
    "prompt",
)
_AT_LEAST_0, _ABOVE_0, _AT_LEAST_1 = ((0.0, True), None), ((0.0, False), None), ((1, True), None)
RANGES: dict[str, tuple[tuple[float, bool] | None, tuple[float, bool] | None]] = {
    # field: ((low, low included), (high, high included)); None: unbounded. Optional fields may be None.
    "max_texts": _AT_LEAST_1,
    "mntp_mask_ratio": ((0.0, False), (1.0, True)),
    "mar_mask_ratio": ((0.0, True), (1.0, True)),
    "mrc_mask_ratio": ((0.0, True), (1.0, True)),
    "alpha": _AT_LEAST_0,
    "mrc_weight": _AT_LEAST_0,
    "decoder_heads": _AT_LEAST_1,
    "decoder_mlp_ratio": _ABOVE_0,
    "decoder_pos_init_std": _ABOVE_0,
    "decoder_pos_lr_mult": _ABOVE_0,
    "loss_chunk_size": ((-1, True), None),
    "max_length": ((4, True), None),
    "steps": _AT_LEAST_1,
    "batch_size": _AT_LEAST_1,
    "grad_accum_steps": _AT_LEAST_1,
    "lr": _ABOVE_0,
    "decoder_lr": _AT_LEAST_0,
    "weight_decay": _AT_LEAST_0,
    "warmup_steps": _AT_LEAST_0,
    "max_grad_norm": _AT_LEAST_0,
    "seed": _AT_LEAST_0,
    "lora_r": _AT_LEAST_1,
    "lora_alpha": _AT_LEAST_1,
    "lora_dropout": ((0.0, True), (1.0, False)),
    "save_every": _AT_LEAST_0,
    "log_every": _AT_LEAST_1,
}


class ConfigError(UserError):
    """A config field of the wrong type or out of range, an unknown field, or a config file that is not a mapping."""


@dataclass
class TrainConfig:
    """One training run's settings (a YAML file's keys, `unimae train --FIELD` options), saved as config.yaml."""

    # --- what to train, on what ---
    model: str = "smollm2-135m"
    """A Hugging Face causal-LM id, a local model folder, a .gguf file, or the alias 'smollm2-135m'."""
    data: str = "wiki"
    """'wiki' (the default Wikipedia sentences, train split), a .txt (one text per line), a .jsonl, or 'hf:NAME[:SPLIT]'."""
    text_field: str = "text"
    """Field holding the text in .jsonl files and Hugging Face datasets."""
    max_texts: int | None = None
    """Use only the first N texts of the corpus (None: all)."""
    output_dir: str = "runs/default"
    """Run folder: config.yaml, metrics.jsonl, checkpoint/ and the exported model/."""

    # --- the method (METHOD.md) ---
    objective: str = "unimae"
    """'unimae': alpha * L_MAR + mrc_weight * L_MRC. 'mntp': the LLM2Vec baseline (bidirectional attention, masked next-token prediction)."""
    mntp_mask_ratio: float = 0.2
    """Fraction of text tokens masked by the MNTP baseline (LLM2Vec: 20%)."""
    mar_mask_ratio: float = 0.5
    """Fraction of the real text tokens replaced by the mask token in the LLM's input (0.4-0.6 best in the paper)."""
    mrc_mask_ratio: float = 0.5
    """Fraction of the other tokens each tiny-decoder row may NOT see (RetroMAE's best: 0.5)."""
    alpha: float = 1.0
    """Weight of L_MAR. 0 trains MRC only."""
    mrc_weight: float = 1.0
    """Weight of L_MRC. 0 trains MAR only (the tiny decoder is then not run)."""
    mask_token: str | None = None
    """Token that replaces masked inputs. None: the tokenizer's mask token, else a rarely used special token (unimae.tokens.MASK_TOKEN_CANDIDATES)."""
    eos_token: str | None = None
    """Token appended to every text; its last-layer state is the embedding. None: the tokenizer's EOS."""
    mar_predict_eos: bool = True
    """Keep the appended EOS as a MAR target (the last text token predicts it). False drops that target, and greedy generations keep their length (configs/default.yaml: false)."""
    decoder_heads: int | None = None
    """Attention heads of the tiny decoder. None: the LLM's number of attention heads."""
    decoder_mlp_ratio: float = 4.0
    """Width of the tiny decoder's MLP as a multiple of the hidden size."""
    decoder_share_embeddings: bool = True
    """The tiny decoder reads the LLM's input embeddings and predicts through its output head (as RetroMAE). False: it gets its own copies."""
    decoder_pos_init_std: float | None = None
    """Initial std of the tiny decoder's position embeddings p_i. None: the std of the LLM's input embedding table."""
    decoder_input_norm: bool = False
    """The tiny decoder sees h_eos RMS-normalised times a learned scalar (initialised at the embedding table's RMS), in its query rows and key slot 0. The exported embedding stays the raw h_eos."""
    decoder_input_proj: bool = False
    """The tiny decoder sees h_eos through a learned d x d map initialised at a scaled identity (scale 1 after decoder_input_norm, else embedding RMS / final-norm weight RMS)."""
    decoder_output_norm_init: str = "ones"
    """Initial weight of the tiny decoder's output norm: 'ones', or 'llm' (the LLM's final-norm weight, so decoded rows have the scale its head expects)."""
    decoder_rope: bool = False
    """Rotary positions on the tiny decoder's queries and keys: a position signal the size of h_eos cannot drown (the absolute positions stay)."""
    decoder_pos_lr_mult: float = 1.0
    """Multiplies the learning rate of the tiny decoder's position table (under Adam, by storing p = mult * theta; same initial p)."""
    prompt: str | None = None
    """A template around each training text, e.g. 'This sentence : "{text}" means in one word:"'; the EOS follows it. Prompt tokens are context, never MAR or MRC targets; the export records the prompt. None: the plain text."""
    encode_prompt: str | None = None
    """The template the export records for encoding (unimae.json ``prompt``), e.g. PromptEOL's, when it differs from the training prompt: trained weights can be read through a prompt they were not trained with. None: the training prompt; '{text}': the text alone."""
    head_precision: str = "fp32"
    """Precision of the vocabulary-head matmuls of both losses: fp32, or bf16 (about 2x faster on CPUs with bf16 units; the log-softmax stays fp32)."""
    loss_chunk_size: int = -1
    """Compute vocabulary logits this many target tokens at a time, recomputed in backward. -1 (auto): chunk only when a batch's fp32 logits would pass 256 MiB (targets x vocabulary x 4 bytes); 0: all at once; N: N tokens."""

    # --- optimisation ---
    max_length: int = 64
    """Tokens per training text including the appended EOS (longer texts are truncated)."""
    steps: int = 100
    """Optimizer steps."""
    batch_size: int = 16
    """Texts per optimizer step, over all processes and accumulation steps (the global batch)."""
    grad_accum_steps: int = 1
    """Micro-batches per optimizer step; batch_size must divide by grad_accum_steps * processes."""
    lr: float = 5e-5
    """Peak learning rate of the LLM (or of its LoRA adapters). Lee STS EOS, default model, 100 steps: 0.47 with 2e-5, 0.55 with 5e-5."""
    decoder_lr: float = 1e-3
    """Peak learning rate of the tiny decoder, which starts from scratch."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    warmup_steps: int = 5
    """Linear warmup steps."""
    lr_scheduler: str = "constant_with_warmup"
    """Schedule after warmup: linear, cosine, constant (no warmup) or constant_with_warmup."""
    max_grad_norm: float = 1.0
    """Gradient clipping (0 disables)."""
    seed: int = 42
    """Seeds data order, masks and initialisation."""
    precision: str = "fp32"
    """fp32, bf16 or fp16 (mixed precision through Accelerate)."""
    model_dtype: str = "fp32"
    """Dtype the LLM's weights are loaded in: fp32, bf16 or fp16. Trainable parameters (LoRA adapters, tiny decoder) stay fp32; bf16/fp16 need lora=true."""
    gradient_checkpointing: bool = False
    """Recompute LLM activations in backward to save memory."""
    lora: bool = False
    """Train LoRA adapters (peft) instead of all LLM weights; export merges them. The tiny decoder is always trained in full. configs/default.yaml: true with lr 2e-4, which kept choice accuracy where a full fine-tune lost it."""
    lora_r: int = 16
    """Rank of the LoRA adapters."""
    lora_alpha: int = 32
    """LoRA scaling numerator (the adapters' update is scaled by lora_alpha / lora_r)."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA adapters' input."""
    lora_target_modules: str | list[str] = "all-linear"
    """Modules that get adapters: 'all-linear' or a list of module names (e.g. [q_proj, v_proj])."""

    # --- bookkeeping ---
    save_every: int = 50
    """Write a checkpoint every N steps (and at the end). 0: only at the end."""
    log_every: int = 1
    """Write a metrics line every N steps."""
    export: bool = True
    """Export the final model to <output_dir>/model when training ends."""

    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form notes saved with the run."""

    def __post_init__(self) -> None:
        """Check every field's type, then its range; a ``ConfigError`` names the field, value and expectation."""
        hints = typing.get_type_hints(TrainConfig)
        for f in dataclasses.fields(self):
            setattr(self, f.name, _checked(f.name, getattr(self, f.name), hints[f.name]))
        for name, (low, high) in RANGES.items():
            value = getattr(self, name)
            if value is not None and not _in_range(value, low, high):
                raise ConfigError(f"{name} must be in {_interval(low, high)}, got {value!r}")
        for name, choices in CHOICES.items():
            if getattr(self, name) not in choices:
                raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {getattr(self, name)!r}")
        for name in ("model", "data", "text_field", "output_dir"):
            if not getattr(self, name).strip():
                raise ConfigError(f"{name} must not be empty")
        if not self.lora_target_modules:
            raise ConfigError("lora_target_modules must name at least one module (or be 'all-linear')")
        if self.model_dtype != "fp32" and not self.lora:
            raise ConfigError(
                f"model_dtype={self.model_dtype} needs lora=true: a full fine-tune keeps its trained weights "
                "in fp32 (use precision=bf16 for mixed precision instead)"
            )
        for name in ("prompt", "encode_prompt"):
            value = getattr(self, name)
            if value is not None and value.count("{text}") != 1:
                raise ConfigError(f"{name} must hold '{{text}}' exactly once, got {value!r}")
        if self.objective == "mntp" and self.encode_prompt is not None:
            raise ConfigError(
                "encode_prompt is for objective=unimae: MNTP embeds by mean pooling, without a prompt "
                "(with configs/default.yaml, add encode_prompt=null)"
            )
        if self.alpha + self.mrc_weight == 0:
            raise ConfigError("alpha and mrc_weight must not both be 0 (nothing would be trained)")
        if self.batch_size % self.grad_accum_steps:
            raise ConfigError(
                f"batch_size={self.batch_size} must be divisible by grad_accum_steps={self.grad_accum_steps}"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def unimae_options(self) -> dict[str, Any]:
        """The fields UniMAE takes by the same name (decoder conditioning options and the prompt)."""
        return {name: getattr(self, name) for name in UNIMAE_OPTIONS}

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))


def _checked(name: str, value: Any, hint: Any) -> Any:
    """``value`` if it has the field's type (an int is taken for a float), else a ``ConfigError``."""
    ok = _matches(value, hint)
    if ok is None:
        expected = hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")
        expected = expected.replace("NoneType", "None")
        raise ConfigError(f"{name} must be of type {expected}, got {value!r} ({type(value).__name__})")
    return float(value) if hint is float else value


def _matches(value: Any, hint: Any) -> bool | None:
    """True if ``value`` fits the annotation (bool is not an int; an int fits float), else None."""
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return True if any(_matches(value, h) for h in typing.get_args(hint)) else None
    if origin is list:
        (item,) = typing.get_args(hint)
        return True if isinstance(value, list) and all(_matches(v, item) for v in value) else None
    if origin is dict:
        return True if isinstance(value, dict) else None
    if hint is type(None):
        return True if value is None else None
    if hint in (int, float) and isinstance(value, bool):
        return None
    if hint is float:
        return True if isinstance(value, (int, float)) and math.isfinite(value) else None
    return True if isinstance(value, hint) else None


def _in_range(value: float, low: tuple[float, bool] | None, high: tuple[float, bool] | None) -> bool:
    if low is not None and (value < low[0] or (value == low[0] and not low[1])):
        return False
    return high is None or value < high[0] or (value == high[0] and high[1])


def _interval(low: tuple[float, bool] | None, high: tuple[float, bool] | None) -> str:
    left = "(-inf" if low is None else ("[" if low[1] else "(") + f"{low[0]:g}"
    right = "inf)" if high is None else f"{high[0]:g}" + ("]" if high[1] else ")")
    return f"{left}, {right}"


def _yaml_floats(values: dict[str, Any]) -> dict[str, Any]:
    """Float fields written as '1e-3', which YAML 1.1 (PyYAML) reads as a string, not a number."""
    floats = {name for name, hint in typing.get_type_hints(TrainConfig).items() if hint is float}
    out = dict(values)
    for k in floats & set(values):
        if isinstance(values[k], str):
            try:
                out[k] = float(values[k])
            except ValueError:
                pass  # left as it is: TrainConfig names the field and the value
    return out


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """A validated TrainConfig from an optional YAML file plus typed overrides (overrides win).

    Raises ``ConfigError`` (naming the file) for a file that is not a mapping of known fields of the
    right types, ``FileNotFoundError`` for a missing one.
    """
    values: dict[str, Any] = {}
    where = ""
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} not found")
        where = f"{path}: "
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as e:
            raise ConfigError(f"{where}not valid YAML ({e})") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{where}must hold a mapping of config fields, got {type(loaded).__name__}")
        values.update(_yaml_floats(loaded))
    values.update(overrides or {})
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{where}unknown config field(s) {unknown}; known fields: {sorted(known)}")
    try:
        return TrainConfig(**values)
    except ConfigError as e:
        raise ConfigError(f"{where}{e}") from None
