"""``Encoder``: sentence embeddings (and generation) from one causal LM, sentence-transformers style.

from unimae import Encoder
enc = Encoder.from_pretrained("runs/default/model")        # how to embed: from its unimae.json
vecs = enc.encode(["a sentence", "another"], normalize_embeddings=True)  # (2, d) float32
enc.generate("What is the capital of France?")               # same weights
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from unimae.chat import chat_input_ids, has_chat_template, text_input_ids
from unimae.encoding.loading import DtypeName, context_length, load_causal_lm, resolve_model_path
from unimae.encoding.pooling import (
    POOLINGS,
    PooledInput,
    check_prompt,
    layout,
    pool,
    reduction_of,
    token_prepending,
)
from unimae.errors import UserError
from unimae.io import not_unicode
from unimae.llm import bidirectional_mask, last_hidden_states, layer_states, require_mask_honouring_attention
from unimae.spec import ATTENTIONS, SPEC_FILE, EmbeddingSpec, SpecError
from unimae.tokens import bos_id_if_added, eos_token_id, pad_batch, pad_token_id

DEFAULT_MAX_LENGTH = 512


def default_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a ``torch.device`` this machine has; UserError for a name torch does not know or a
    device that is not there (``cuda`` without CUDA, ``cuda:3`` on a one-GPU machine, ``mps`` off a Mac)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise UserError(f"device {device!r} is not a device name (cpu, cuda, cuda:1, mps): {e}") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UserError(f"device {device!r}: this machine (this torch build) has no CUDA device")
        if dev.index is not None and dev.index >= count:
            raise UserError(
                f"device {device!r}: this machine has {count} CUDA device(s), cuda:0..{count - 1}"
            )
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise UserError(f"device {device!r}: MPS (Apple GPU) is not available here")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"device {device!r}: unimae runs on cpu, cuda or mps")
    return dev


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
        prompt: a template holding '{text}' once around each text of eos or last pooling (e.g.
            ``pooling.PROMPTEOL_PROMPT``); for eos the EOS follows it. None: the text alone.
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
        prompt: str | None = None,
    ):
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; choose one of {POOLINGS}")
        check_prompt(pooling, prompt)
        self.prompt = prompt
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {attention!r}")
        self.attention = attention
        if attention == "bidirectional":
            require_mask_honouring_attention(model, "embedding with bidirectional attention")
        self.model, self.tokenizer, self.pooling = model, tokenizer, pooling
        self.device = check_device(device) if device is not None else default_device()
        self.model.to(self.device).eval()
        self.eos_id = eos_token_id(tokenizer, eos_token)
        self.bos_id = bos_id_if_added(tokenizer)
        self.context_length = context_length(model)
        if max_length is None:  # 512, or the whole context if shorter
            max_length = min(DEFAULT_MAX_LENGTH, self.context_length or DEFAULT_MAX_LENGTH)
        self.max_length = self._check_max_length(max_length)
        self.padding_side = padding_side
        self.pad_id = pad_token_id(tokenizer, self.eos_id)
        self.backend, self.runtime = "torch", None  # runtime: an ONNX Runtime/OpenVINO body (backends.py)

    @classmethod
    def from_spec(cls, model, tokenizer, spec: EmbeddingSpec, **kwargs) -> Encoder:
        """An Encoder that embeds as ``spec`` records (pooling, attention, EOS token); ``kwargs`` that are
        not None override it."""
        recorded = {"pooling": spec.pooling, "eos_token": spec.eos_token, "attention": spec.attention}
        for key, value in recorded.items():
            if kwargs.get(key) is None:
                kwargs[key] = value
        if kwargs.get("prompt") is None and kwargs["pooling"] == spec.pooling:
            kwargs["prompt"] = spec.prompt  # the prompt it was trained with
        return cls(model, tokenizer, **kwargs)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str,
        pooling: str | None = None,
        *,
        dtype: DtypeName = "fp32",
        device: str | torch.device | None = None,
        max_length: int | None = None,
        prompt: str | None = None,
        backend: str | None = None,
        **kwargs,
    ) -> Encoder:
        """Load any causal LM (hub id, folder, .gguf, 'smollm2-135m', a unimae run folder).

        ``pooling``, ``eos_token`` and ``attention`` default to what the folder's ``unimae.json`` records
        (an ``EmbeddingSpec``), else EOS pooling with causal attention. A corrupt ``unimae.json``, or one
        whose EOS id the tokenizer does not give, raises ``SpecError`` naming the file.

        ``backend``: what computes embeddings: torch, onnx, onnx-int8, openvino, openvino-int8 (see
        ``unimae.encoding.backends``; generation stays on torch). None: the graph an ONNX/OpenVINO export
        folder holds, else torch. A graph the folder lacks is built once into the cache.
        """
        from unimae.encoding.backend_runtime import load_runtime

        path = resolve_model_path(name_or_path)
        spec = EmbeddingSpec.load(path) if Path(path).is_dir() else None
        model, tokenizer = load_causal_lm(path, dtype=dtype)
        eos_given = kwargs.get("eos_token") is not None
        enc = cls.from_spec(
            model,
            tokenizer,
            spec or EmbeddingSpec(),
            pooling=pooling,
            max_length=max_length,
            device=device,
            prompt=prompt,
            **kwargs,
        )
        if spec is not None and spec.eos_token_id not in (None, enc.eos_id) and not eos_given:
            raise SpecError(
                f"{Path(path) / SPEC_FILE}: records eos_token_id {spec.eos_token_id} but the tokenizer "
                f"gives {enc.eos_id} for {spec.eos_token!r}; re-export the model"
            )
        enc.backend, enc.runtime = load_runtime(enc, path, backend)
        if enc.runtime is not None and enc.pooling == "tokenprepend":
            raise UserError(
                f"tokenprepend pooling rewrites hidden states inside the model's layers, which the "
                f"{enc.backend} graph cannot do; use backend='torch' for it"
            )
        return enc

    @property
    def spec(self) -> EmbeddingSpec:
        """How this encoder embeds, as an export records it in ``unimae.json``."""
        return EmbeddingSpec(
            pooling=self.pooling,
            attention=self.attention,
            eos_token=self.tokenizer.convert_ids_to_tokens(self.eos_id),
            eos_token_id=self.eos_id,
            add_bos=self.bos_id is not None,
            max_length=self.max_length,
            prompt=self.prompt,
        )

    # --- embeddings -----------------------------------------------------------------------------

    @property
    def dim(self) -> int:
        return self.model.config.get_text_config().hidden_size

    def _check_max_length(self, max_length: int) -> int:
        if isinstance(max_length, bool) or not isinstance(max_length, (int, np.integer)):
            raise TypeError(f"max_length must be an int, got {type(max_length).__name__}")
        if max_length < 2:
            raise UserError(f"max_length must be >= 2 (a text token and the EOS), got {max_length}")
        if self.context_length is not None and max_length > self.context_length:
            raise UserError(
                f"max_length={max_length} exceeds the model's context of {self.context_length} tokens"
            )
        return max_length

    def _check_truncate_dim(self, truncate_dim: int | None) -> int:
        if truncate_dim is None:
            return self.dim
        if isinstance(truncate_dim, bool) or not isinstance(truncate_dim, (int, np.integer)):
            raise TypeError(f"truncate_dim must be an int, got {type(truncate_dim).__name__}")
        if not 1 <= truncate_dim <= self.dim:
            raise UserError(f"truncate_dim must be between 1 and {self.dim}, got {truncate_dim}")
        return truncate_dim

    @torch.inference_mode()
    def encode(
        self,
        texts: str | Sequence[str],
        batch_size: int = 32,
        max_length: int | None = None,
        normalize_embeddings: bool = False,
        show_progress_bar: bool | None = None,
        truncate: bool = True,
        truncate_dim: int | None = None,
    ) -> np.ndarray:
        """Embed texts: ``(n, k)`` float32 (``(k,)`` for a single string), ``k = truncate_dim or dim``.

        Texts longer than ``max_length`` tokens are truncated, keeping the appended EOS, unless
        ``truncate=False``, which raises ``TextTooLongError``. Empty texts raise ValueError. Batches are
        formed by length, so vectors do not depend on the input order or on the other texts.
        ``truncate_dim`` keeps the first k dimensions (Matryoshka style); ``normalize_embeddings`` then
        scales the kept dimensions to unit length (the names and order of sentence-transformers).
        """
        single = isinstance(texts, str)
        if batch_size < 1:
            raise UserError(f"batch_size must be >= 1, got {batch_size}")
        inputs = self.tokenize([texts] if single else texts, max_length, truncate)
        out = self.encode_tokenized(inputs, batch_size, normalize_embeddings, show_progress_bar, truncate_dim)
        return out[0] if single else out

    def tokenize(
        self, texts: Sequence[str], max_length: int | None = None, truncate: bool = True
    ) -> list[PooledInput]:
        """Each text laid out for this encoder's pooling (EOS appended), once: ``encode_tokenized`` embeds
        them, and ``len(item.ids)`` is the token count (a server counts and embeds from one tokenization).
        Same errors as ``encode``."""
        texts = _check_texts(list(texts))
        limit = self._check_max_length(self.max_length if max_length is None else max_length)
        return [
            layout(self.pooling, self.tokenizer, t, limit, self.eos_id, self.bos_id, truncate, self.prompt)
            for t in texts
        ]

    @torch.inference_mode()
    def encode_tokenized(
        self,
        inputs: Sequence[PooledInput],
        batch_size: int = 32,
        normalize_embeddings: bool = False,
        show_progress_bar: bool | None = None,
        truncate_dim: int | None = None,
        max_tokens: int | None = None,
    ) -> np.ndarray:
        """``(n, k)`` float32 embeddings of ``tokenize``'s output; batches by length, longest first.

        ``max_tokens``: also cut a batch before its padded size (texts x longest) would pass this many
        tokens; a server embedding one mix of short and long requests wastes less compute on padding.
        """
        dim = self._check_truncate_dim(truncate_dim)
        out = np.zeros((len(inputs), dim), dtype=np.float32)
        if show_progress_bar is None:
            show_progress_bar = len(inputs) > 4 * batch_size
        batches = length_batches([len(it.ids) for it in inputs], batch_size, max_tokens)
        with tqdm(total=len(inputs), desc="encode", unit="text", disable=not show_progress_bar) as bar:
            for idx in batches:  # the bar shows texts/s
                vecs = self._embed_batch([inputs[i] for i in idx])[:, :dim]
                if normalize_embeddings:
                    vecs = torch.nn.functional.normalize(vecs, dim=-1)
                out[idx] = vecs.float().cpu().numpy()
                bar.update(len(idx))
        return out

    @torch.inference_mode()
    def encode_layers(
        self,
        texts: Sequence[str],
        layers: Sequence[int],
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
    ) -> dict[int, np.ndarray]:
        """``{layer: (n, d)}``: the texts pooled as ``encode`` pools them, read after each of ``layers``.

        One forward pass per batch serves every layer. ``layers`` index the model's hidden states (0: the
        embeddings, ``num_hidden_layers`` or -1: the last layer, which ``encode`` reads); intermediate
        layers pass the model's final norm. Raw vectors (no normalisation); the PyTorch backend only.
        """
        if self.runtime is not None:
            raise UserError(
                "encode_layers needs the PyTorch backend (an exported graph gives the last layer only)"
            )
        if batch_size < 1:
            raise UserError(f"batch_size must be >= 1, got {batch_size}")
        layers = list(layers)
        inputs = self.tokenize(texts)
        out = np.zeros((len(inputs), len(layers), self.dim), dtype=np.float32)
        if show_progress_bar is None:
            show_progress_bar = len(inputs) > 4 * batch_size
        batches = length_batches([len(it.ids) for it in inputs], batch_size)
        with tqdm(total=len(inputs), desc="encode", unit="text", disable=not show_progress_bar) as bar:
            for idx in batches:
                out[idx] = self._embed_batch([inputs[i] for i in idx], layers).float().cpu().numpy()
                bar.update(len(idx))
        return {layer: out[:, k] for k, layer in enumerate(layers)}

    def _embed_batch(self, items, layers: Sequence[int] | None = None) -> torch.Tensor:
        """``(B, d)`` vectors of laid-out texts (padded here; each text's span picked after padding);
        with ``layers``, ``(B, k, d)``: the same positions pooled after each of the k layers."""
        ids, mask = pad_batch([it.ids for it in items], self.pad_id, side=self.padding_side)
        L = ids.shape[1]
        shift = torch.tensor([L - len(it.ids) if self.padding_side == "left" else 0 for it in items])
        start = torch.tensor([it.start for it in items]) + shift
        end = torch.tensor([it.end for it in items]) + shift
        ids, mask = ids.to(self.device), mask.to(self.device)
        attention = None  # causal: the 2-D padding mask is enough
        if self.attention == "bidirectional":
            attention = bidirectional_mask(mask, self.model.get_input_embeddings().weight.dtype)
        prepend = contextlib.nullcontext()
        if self.pooling == "tokenprepend":  # the placeholder takes the last token's state in early layers
            placeholder = torch.tensor([it.placeholder for it in items]) + shift
            prepend = token_prepending(self.model, placeholder, end - 1)
        if self.runtime is not None:  # ONNX Runtime / OpenVINO: the same states from a graph (on the CPU)
            hidden = self.runtime(ids, mask).to(self.device)
        elif layers is not None:
            with prepend:
                states = layer_states(self.model, ids, mask, layers, attention)  # (B, L, k, d)
            B, L, k, d = states.shape
            pooled = pool(
                states.reshape(B, L, k * d),
                start.to(self.device),
                end.to(self.device),
                reduction_of(self.pooling),
            )
            return pooled.reshape(B, k, d)
        else:
            with prepend:
                hidden = last_hidden_states(self.model, ids, mask, attention)  # (B, L, d)
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
        Control-token text inside the prompt stays text (see ``unimae.chat``): it cannot forge a turn.
        """
        use_chat = chat if chat is not None else has_chat_template(self.tokenizer)
        if use_chat:
            messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
            ids = torch.tensor([chat_input_ids(self.tokenizer, messages)])
        else:
            if not isinstance(prompt, str):
                raise TypeError("chat messages need a tokenizer with a chat template")
            ids = torch.tensor([text_input_ids(self.tokenizer, prompt)])
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


def length_batches(lengths: Sequence[int], batch_size: int, max_tokens: int | None = None) -> list[list[int]]:
    """Indices of texts in batches, longest first: at most ``batch_size`` texts, and (if given) at most
    ``max_tokens`` padded tokens (texts x the batch's longest, its first); a text over it goes alone."""
    if batch_size < 1 or (max_tokens is not None and max_tokens < 1):
        raise ValueError(f"batch_size and max_tokens must be >= 1, got {batch_size}, {max_tokens}")
    batches: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        b = batches[-1] if batches else None
        if b is None or len(b) == batch_size or (max_tokens and (len(b) + 1) * lengths[b[0]] > max_tokens):
            batches.append([i])
        else:
            b.append(i)
    return batches


def _check_texts(texts: list) -> list[str]:
    """The texts, or TypeError (not a string) / UserError (blank, or not valid Unicode: a lone surrogate,
    bytes that were not UTF-8) naming the first bad one."""
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}] is {type(t).__name__}, not str")
        if not t.strip():
            raise UserError(f"texts[{i}] is empty")
        why = not_unicode(t)
        if why is not None:
            raise UserError(f"texts[{i}] cannot be embedded: {why}")
    return texts
