"""``Encoder``: sentence embeddings (and generation) from one causal LM, sentence-transformers style.

from unimae import Encoder
enc = Encoder.from_pretrained("runs/default/model")        # pooling from unimae.json: eos
vecs = enc.encode(["a sentence", "another"], normalize=True)  # (2, d) float32
enc.generate("What is the capital of France?")               # same weights
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from unimae.encoding.loading import context_length, load_causal_lm, resolve_model_path
from unimae.encoding.pooling import POOLINGS, layout, pool, reduction_of
from unimae.objective.mntp import bidirectional_mask
from unimae.tokens import bos_id_if_added, eos_token_id, pad_batch, position_ids
from unimae.training.export import EMBEDDING_INFO

DEFAULT_MAX_LENGTH = 512


def default_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


class Encoder:
    """Embeds texts with a causal LM and generates with the same weights.

    Args:
        model: a Hugging Face causal LM.
        tokenizer: its tokenizer.
        pooling: one of ``POOLINGS`` (``eos`` for UniMAE models).
        eos_token: token appended for ``eos`` pooling (None: the tokenizer's EOS).
        max_length: default token budget per text, the EOS included (None: 512 or the model's context
            if shorter); above the model's context is an error.
        padding_side: 'right' or 'left'; vectors do not depend on it.
        attention: 'causal' (the LLM as trained) or 'bidirectional' (for MNTP-trained models) when embedding;
            generation is always causal.
    """

    def __init__(
        self,
        model,
        tokenizer,
        pooling: str = "eos",
        eos_token: str | None = None,
        max_length: int | None = None,
        padding_side: str = "right",
        device: str | torch.device | None = None,
        attention: str = "causal",
    ):
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; choose one of {POOLINGS}")
        if attention not in ("causal", "bidirectional"):
            raise ValueError(f"attention must be 'causal' or 'bidirectional', got {attention!r}")
        self.attention = attention
        self.model, self.tokenizer, self.pooling = model, tokenizer, pooling
        self.device = torch.device(device) if device is not None else default_device()
        self.model.to(self.device).eval()
        self.eos_id = eos_token_id(tokenizer, eos_token)
        self.bos_id = bos_id_if_added(tokenizer)
        self.context_length = context_length(model)
        if max_length is None:  # 512, or the whole context if shorter
            max_length = min(DEFAULT_MAX_LENGTH, self.context_length or DEFAULT_MAX_LENGTH)
        self.max_length = self._check_max_length(max_length)
        self.padding_side = padding_side
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_id

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str,
        pooling: str | None = None,
        *,
        dtype: str = "fp32",
        device: str | torch.device | None = None,
        max_length: int | None = None,
        **kwargs,
    ) -> Encoder:
        """Load any causal LM (hub id, folder, .gguf, 'smollm2-135m', a unimae run folder).

        ``pooling`` and ``eos_token`` default to what the folder's ``unimae.json`` records, else ``eos``.
        """
        path = resolve_model_path(name_or_path)
        info_file = Path(path) / EMBEDDING_INFO
        info = json.loads(info_file.read_text()) if info_file.is_file() else {}
        model, tokenizer = load_causal_lm(path, dtype=dtype)
        kwargs.setdefault("eos_token", info.get("eos_token"))
        kwargs.setdefault("attention", info.get("attention", "causal"))
        return cls(
            model,
            tokenizer,
            pooling=pooling or info.get("pooling", "eos"),
            max_length=max_length,
            device=device,
            **kwargs,
        )

    # --- embeddings -----------------------------------------------------------------------------

    @property
    def dim(self) -> int:
        return self.model.config.get_text_config().hidden_size

    def _check_max_length(self, max_length: int) -> int:
        if max_length < 2:
            raise ValueError(f"max_length must be >= 2, got {max_length}")
        if self.context_length is not None and max_length > self.context_length:
            raise ValueError(
                f"max_length={max_length} exceeds the model's context of {self.context_length} tokens"
            )
        return max_length

    @torch.inference_mode()
    def encode(
        self,
        texts: str | Sequence[str],
        batch_size: int = 32,
        max_length: int | None = None,
        normalize: bool = False,
        show_progress_bar: bool | None = None,
        truncate: bool = True,
    ) -> np.ndarray:
        """Embed texts: ``(n, d)`` float32 (``(d,)`` for a single string).

        Texts longer than ``max_length`` tokens are truncated, keeping the appended EOS, unless
        ``truncate=False``, which raises ``TextTooLongError``. Empty texts raise ValueError. Batches are
        formed by length, so vectors do not depend on the input order or on the other texts.
        """
        single = isinstance(texts, str)
        texts = [texts] if single else list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"texts[{i}] is {type(t).__name__}, not str")
            if not t.strip():
                raise ValueError(f"texts[{i}] is empty")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        limit = self._check_max_length(max_length or self.max_length)
        inputs = [
            layout(self.pooling, self.tokenizer, t, limit, self.eos_id, self.bos_id, truncate) for t in texts
        ]
        order = sorted(range(len(inputs)), key=lambda i: -len(inputs[i].ids))  # longest first
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if show_progress_bar is None:
            show_progress_bar = len(texts) > 4 * batch_size
        for b in tqdm(range(0, len(order), batch_size), desc="encode", disable=not show_progress_bar):
            idx = order[b : b + batch_size]
            vecs = self._embed_batch([inputs[i] for i in idx])
            if normalize:
                vecs = torch.nn.functional.normalize(vecs, dim=-1)
            out[idx] = vecs.float().cpu().numpy()
        return out[0] if single else out

    def _embed_batch(self, items) -> torch.Tensor:
        ids, mask = pad_batch([it.ids for it in items], self.pad_id, side=self.padding_side)
        L = ids.shape[1]
        shift = torch.tensor([L - len(it.ids) if self.padding_side == "left" else 0 for it in items])
        start = torch.tensor([it.start for it in items]) + shift
        end = torch.tensor([it.end for it in items]) + shift
        ids, mask = ids.to(self.device), mask.to(self.device)
        attn = (
            mask
            if self.attention == "causal"
            else bidirectional_mask(mask, self.model.get_input_embeddings().weight.dtype)
        )
        hidden = self.model.base_model(
            input_ids=ids, attention_mask=attn, position_ids=position_ids(mask), use_cache=False
        ).last_hidden_state  # (B, L, d)
        return pool(hidden, start.to(self.device), end.to(self.device), reduction_of(self.pooling))

    def similarity(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Cosine similarity matrix between two sets of embeddings."""
        a = a / np.linalg.norm(a, axis=-1, keepdims=True).clip(1e-12)
        b = b / np.linalg.norm(b, axis=-1, keepdims=True).clip(1e-12)
        return a @ b.T

    # --- generation ---------------------------------------------------------------------------------

    @torch.inference_mode()
    def generate(
        self,
        prompt: str | list[dict],
        max_new_tokens: int = 64,
        chat: bool | None = None,
        do_sample: bool = False,
        **kwargs,
    ) -> str:
        """Generate a continuation with the same weights.

        ``prompt`` is a string or a list of chat messages. With ``chat`` (default: when the tokenizer
        has a chat template) a string becomes one user message and the chat template is applied.
        """
        use_chat = chat if chat is not None else bool(getattr(self.tokenizer, "chat_template", None))
        if use_chat:
            messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
            ids = self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
            )["input_ids"]
        else:
            if not isinstance(prompt, str):
                raise TypeError("chat messages need a tokenizer with a chat template")
            ids = self.tokenizer(prompt, return_tensors="pt").input_ids
        ids = ids.to(self.device)
        out = self.model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=do_sample,
            pad_token_id=self.pad_id,
            **kwargs,
        )
        return self.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip()
