"""Any ``Encoder`` as an mteb model: mteb's encode protocol, cosine similarity and model metadata.

    from unimae import Encoder
    from unimae.evaluation.mteb_model import MtebEncoder
    model = MtebEncoder(Encoder.from_pretrained("smollm2-135m", pooling="mean"))
    mteb.evaluate(model, tasks, cache=None)

The revision in the metadata is a hash of the weights, the pooling and the token budget, so mteb's result
cache can never hand back scores of another checkpoint or pooling under the same name.
"""

from __future__ import annotations

import hashlib
import logging
import re
from typing import Any

import numpy as np

from unimae.llm import weights_fingerprint

log = logging.getLogger(__name__)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "model"


class MtebEncoder:
    """Wraps an ``Encoder`` (or anything with ``encode(texts, batch_size=..., max_length=...)``, ``pooling``,
    ``dim`` and ``model``) for ``mteb.evaluate``.

    Args:
        encoder: the ``Encoder``.
        name: model name shown in mteb's results (``org/name``; default ``unimae/<model>-<pooling>``).
        batch_size: texts per forward pass (mteb's own ``batch_size`` is for its data loader only).
        max_length: token budget per text (None: the Encoder's).
        cache_embeddings: remember vectors by text within this object, so a text shared by several tasks
            or pairs (Lee STS embeds 50 documents in 1,225 pairs) is embedded once. Safe because an
            ``Encoder``'s vectors do not depend on the other texts in a batch.
    """

    def __init__(
        self,
        encoder,
        name: str | None = None,
        batch_size: int = 32,
        max_length: int | None = None,
        cache_embeddings: bool = True,
        source: str | None = None,
    ):
        self.encoder = encoder
        self.batch_size = batch_size
        self.max_length = max_length
        self.cache_embeddings = cache_embeddings
        self._cache: dict[str, np.ndarray] = {}
        self.n_encoded = 0  # texts actually run through the model (cache misses)
        base = source or getattr(getattr(encoder.model, "config", None), "_name_or_path", "") or "model"
        self.name = name or f"unimae/{_slug(base.rstrip('/').split('/')[-1])}-{encoder.pooling}"
        if "/" not in self.name:
            self.name = f"unimae/{self.name}"
        limit = max_length or encoder.max_length
        self.revision = f"{weights_fingerprint(encoder.model)}-{encoder.pooling}-{limit}"
        if getattr(encoder, "prompt", None):  # a prompt changes every vector
            self.revision += "-" + hashlib.sha256(encoder.prompt.encode()).hexdigest()[:8]
        self._meta = None

    @property
    def mteb_model_meta(self):
        if self._meta is None:
            from mteb.models.model_meta import ModelMeta, ScoringFunction

            n_params = sum(p.numel() for p in self.encoder.model.parameters())
            self._meta = ModelMeta.create_empty(
                {
                    "name": self.name,
                    "revision": self.revision,
                    "n_parameters": n_params,
                    "embed_dim": self.encoder.dim,
                    "max_tokens": self.max_length or self.encoder.max_length,
                    "similarity_fn_name": ScoringFunction.COSINE,
                    "framework": ["PyTorch"],
                    "use_instructions": False,
                    "languages": ["eng-Latn"],
                    "open_weights": True,
                }
            )
        return self._meta

    def encode(
        self,
        inputs,
        *,
        task_metadata=None,
        hf_split: str | None = None,
        hf_subset: str | None = None,
        prompt_type=None,
        **kwargs: Any,
    ) -> np.ndarray:
        """mteb's encode protocol: ``inputs`` is a DataLoader of dicts with a ``text`` list -> ``(n, d)``."""
        texts: list[str] = []
        for batch in inputs:
            texts.extend(batch["text"])
        return self.encode_texts(texts)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """``(n, d)`` float32 vectors; empty texts get a zero vector (cosine 0 with everything)."""
        todo = sorted({t for t in texts if t.strip() and t not in self._cache})
        if todo:
            vecs = self.encoder.encode(
                todo,
                batch_size=self.batch_size,
                max_length=self.max_length,
                normalize_embeddings=False,
                show_progress_bar=len(todo) > 4 * self.batch_size,
            )
            self.n_encoded += len(todo)
            fresh = dict(zip(todo, np.asarray(vecs, dtype=np.float32), strict=True))
            if self.cache_embeddings:
                self._cache.update(fresh)
        else:
            fresh = {}
        empty = sum(1 for t in texts if not t.strip())
        if empty:
            log.warning("%d empty text(s) get a zero vector", empty)
        zero = np.zeros(self.encoder.dim, dtype=np.float32)
        rows = [zero if not t.strip() else (fresh.get(t) if t in fresh else self._cache[t]) for t in texts]
        return np.stack(rows) if rows else np.zeros((0, self.encoder.dim), dtype=np.float32)

    def similarity(self, embeddings1, embeddings2):
        from mteb.similarity_functions import cos_sim

        return cos_sim(embeddings1, embeddings2)

    def similarity_pairwise(self, embeddings1, embeddings2):
        from mteb.similarity_functions import pairwise_cos_sim

        return pairwise_cos_sim(embeddings1, embeddings2)
