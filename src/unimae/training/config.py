"""The typed configuration of a UniMAE training run.

Every knob of the method and of the loop is a field with a documented default. A run reads a YAML
file (optional), applies ``key=value`` overrides from the command line, validates, and saves the
resolved config as ``config.yaml`` in its run folder.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PRECISIONS = ("fp32", "bf16", "fp16")
SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")


@dataclass
class TrainConfig:
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
    head_precision: str = "fp32"
    """Precision of the vocabulary-head matmuls of both losses: fp32, or bf16 (about 2x faster on CPUs with bf16 units; the log-softmax stays fp32)."""
    loss_chunk_size: int = 0
    """Compute vocabulary logits this many tokens at a time, recomputed in backward (0: all at once). Saves memory for big vocabularies."""

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
    gradient_checkpointing: bool = False
    """Recompute LLM activations in backward to save memory."""
    lora: bool = False
    """Train LoRA adapters (peft) instead of all LLM weights; export merges them. The tiny decoder is always trained in full. configs/default.yaml: true with lr 2e-4, which kept choice accuracy where a full fine-tune lost it."""
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: str | list[str] = "all-linear"

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
        for name in ("mar_mask_ratio", "mrc_mask_ratio"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if self.alpha < 0 or self.mrc_weight < 0 or self.alpha + self.mrc_weight == 0:
            raise ValueError("alpha and mrc_weight must be >= 0 and not both 0")
        if self.objective not in ("unimae", "mntp"):
            raise ValueError(f"unknown objective {self.objective!r} (known: unimae, mntp)")
        if not 0.0 < self.mntp_mask_ratio <= 1.0:
            raise ValueError(f"mntp_mask_ratio must be in (0, 1], got {self.mntp_mask_ratio}")
        if self.head_precision not in ("fp32", "bf16"):
            raise ValueError(f"head_precision must be fp32 or bf16, got {self.head_precision!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.lr_scheduler not in SCHEDULERS:
            raise ValueError(f"lr_scheduler must be one of {SCHEDULERS}, got {self.lr_scheduler!r}")
        for name in ("steps", "batch_size", "grad_accum_steps", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size % self.grad_accum_steps:
            raise ValueError(
                f"batch_size={self.batch_size} must be divisible by grad_accum_steps={self.grad_accum_steps}"
            )
        if self.max_length < 4:
            raise ValueError(f"max_length must be >= 4, got {self.max_length}")
        if self.warmup_steps < 0 or self.save_every < 0:
            raise ValueError("warmup_steps and save_every must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["steps=10", "lora=true"]`` -> ``{"steps": 10, "lora": True}`` (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not of the form key=value")
        key, value = item.split("=", 1)
        out[key.strip()] = _parse_value(value)
    return out


def _parse_value(value: str) -> Any:
    return yaml.safe_load(value) if value.strip() else None


def _coerce_floats(values: dict[str, Any]) -> dict[str, Any]:
    """Float fields given as ints or as strings YAML 1.1 does not read as numbers ('1e-3')."""
    floats = {f.name for f in dataclasses.fields(TrainConfig) if f.type in ("float", float)}
    out = dict(values)
    for k in floats & set(values):
        v = values[k]
        if isinstance(v, (int, str)) and not isinstance(v, bool):
            try:
                out[k] = float(v)
            except ValueError:
                raise ValueError(f"{k} must be a number, got {v!r}") from None
    return out


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """A validated TrainConfig from an optional YAML file plus overrides (overrides win)."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} not found")
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path} must hold a mapping of config fields")
        values.update(loaded)
    values.update(overrides or {})
    values = _coerce_floats(values)
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown config field(s) {unknown}; known fields: {sorted(known)}")
    return TrainConfig(**values)
