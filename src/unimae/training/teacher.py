"""Teacher vectors of distillation: the frozen base model's prompt embedding of each training text.

Computed once before the first step (the weights are still the base model's: LoRA adapters start at
zero and are switched off for this read, a full fine-tune has not moved yet) for the texts the run will
see, and cached in ``<cache>/teachers/<key>.npz`` keyed by the model (its name and a hash of its
weights), the prompt, the pooling and the token budget. A later run with the same key (another seed,
more steps, a sweep point) computes only the texts it has not seen. Each file records its key and is
refused for another one, so a teacher is never read for a model or prompt it was not computed with.
"""

from __future__ import annotations

import hashlib
import io
import json
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from unimae.encoding.pooling import PooledInput, PromptTokens
from unimae.errors import UserError
from unimae.io import atomic_write_bytes
from unimae.paths import cache_dir


class TeacherCacheError(UserError):
    """A teacher file that was computed for another model, prompt or budget, or cannot be read."""


@dataclass(frozen=True)
class TeacherKey:
    """What a teacher vector depends on."""

    model: str  # the name or path the run loaded
    weights: str  # unimae.llm.weights_fingerprint of the base model
    prompt: str  # the template, read at its last token
    max_length: int  # tokens per training text (the text is truncated as in training)
    pooling: str = "last"

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:20]


def teacher_file(key: TeacherKey, root: Path | None = None) -> Path:
    return (root or cache_dir() / "teachers") / f"{key.digest()}.npz"


def sequence_hash(ids: list[int]) -> str:
    """The cache's name of one training text (its token ids)."""
    return hashlib.sha1(np.asarray(ids, dtype=np.int64).tobytes()).hexdigest()


def load_teacher_file(path: Path, key: TeacherKey) -> dict[str, np.ndarray]:
    """``{sequence hash: vector}`` of a teacher file; TeacherCacheError if it holds another key's vectors
    or is unreadable."""
    try:
        with np.load(path, allow_pickle=False) as f:
            stored = json.loads(str(f["key"]))
            hashes, vectors = f["hashes"], f["vectors"]
    except (OSError, ValueError, KeyError) as e:
        raise TeacherCacheError(
            f"{path}: not a readable teacher file ({e}); delete it to recompute"
        ) from None
    if stored != asdict(key):
        raise TeacherCacheError(
            f"{path} holds teacher vectors of {stored}, not of {asdict(key)}: refusing a teacher computed "
            "for another model, prompt or budget (delete the file to recompute)"
        )
    return dict(zip(hashes.tolist(), vectors, strict=True))


def save_teacher_file(path: Path, key: TeacherKey, vectors: dict[str, np.ndarray]) -> Path:
    buffer = io.BytesIO()
    hashes = sorted(vectors)
    np.savez(
        buffer,
        key=np.array(json.dumps(asdict(key), sort_keys=True)),
        hashes=np.array(hashes),
        vectors=np.stack([vectors[h] for h in hashes]).astype(np.float32),
    )
    return atomic_write_bytes(path, buffer.getvalue())


def teacher_inputs(sequences: list[list[int]], prompt: PromptTokens, max_length: int, has_bos: bool):
    """Each training sequence ``[BOS]? x EOS`` as the teacher reads it: ``[BOS]? prefix x suffix``, the
    text truncated to ``max_length``, pooled at the last token."""
    head = int(has_bos)
    out = []
    for ids in sequences:
        laid = ids[:head] + prompt.wrap(list(ids[head:-1]), max_length - head)
        out.append(PooledInput(laid, len(laid) - 1, len(laid)))
    return out


@torch.no_grad()
def compute_teacher(llm: nn.Module, tokenizer, sequences: list[list[int]], key: TeacherKey, has_bos: bool):
    """``(n, d)`` float32 teacher vectors of ``sequences`` from ``llm`` with any LoRA adapters off."""
    from unimae.encoding.encoder import Encoder

    inputs = teacher_inputs(sequences, PromptTokens.of(tokenizer, key.prompt), key.max_length, has_bos)
    base = llm.disable_adapter() if hasattr(llm, "disable_adapter") else nullcontext()
    was_training = llm.training
    with base:
        enc = Encoder(llm, tokenizer, pooling="last", max_length=max(len(it.ids) for it in inputs))
        vectors = enc.encode_tokenized(inputs, batch_size=32, show_progress_bar=len(inputs) > 64)
    llm.train(was_training)
    return vectors


def teacher_vectors(
    llm: nn.Module,
    tokenizer,
    sequences: list[list[int]],
    key: TeacherKey,
    has_bos: bool,
    root: Path | None = None,
) -> np.ndarray:
    """``(n, d)`` teacher vectors of ``sequences``: read from the cache, the missing ones computed and
    added to it."""
    path = teacher_file(key, root)
    cached = load_teacher_file(path, key) if path.exists() else {}
    hashes = [sequence_hash(s) for s in sequences]
    missing = sorted({h: i for i, h in enumerate(hashes) if h not in cached}.values())
    if missing:
        fresh = compute_teacher(llm, tokenizer, [sequences[i] for i in missing], key, has_bos)
        cached.update({hashes[i]: v for i, v in zip(missing, fresh, strict=True)})
        save_teacher_file(path, key, cached)
    return np.stack([cached[h] for h in hashes])
