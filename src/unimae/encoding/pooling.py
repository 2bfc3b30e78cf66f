"""Poolings: how a text becomes model input, and which hidden states become its vector.

Each pooling is (1) a way to lay out the input ids of one text, with the span ``[start, end)`` of
positions it pools, and (2) a reduction over that span: ``last`` takes the state at ``end - 1``,
``mean`` averages the span. The reduction is a pure function of tensors.

============ ====================================================== =========
pooling      input                                                  reduction
============ ====================================================== =========
eos          ``[BOS]? text EOS`` (UniMAE)                            last (EOS)
last         ``[BOS]? text``                                         last
mean         ``[BOS]? text``, span = the text                        mean
echo         ``[BOS]? <prompt> text <prompt> text``, span = 2nd copy mean
prompteol    ``[BOS]? This sentence : "text" means in one word:"``  last
tokenprepend ``[BOS]? This sentence : "<PST>text" means in one ..`` last, see below
============ ====================================================== =========

A ``prompt`` (a template holding ``{text}`` once, e.g. PromptEOL's ``PROMPTEOL_PROMPT``) wraps the text
for ``eos`` (``[BOS]? prefix text suffix EOS``, the layout prompted UniMAE trains on) and ``last``.
Prompt and EOS are never truncated, only the text.

Token Prepending (Fu et al., "Token Prepending: A Training-Free Approach for Eliciting Better Sentence
Embeddings from LLMs", ACL 2025, arXiv:2412.11556): a placeholder token ``<PST>`` precedes the text in
the PromptEOL prompt, and in the early layers its state is replaced, layer by layer, with the sentence
embedding so far (the last token's output of the previous layer), so that the text's tokens, which
cannot see what follows them under causal attention, can attend to the whole sentence. Here: the
inputs of layers ``1 .. k`` are changed (``k`` a quarter of the depth, the paper's 7-8 of 32 layers),
by forward pre-hooks (:func:`token_prepending`); the embedding is the last layer's state of the last
token (the paper's early exit to an intermediate layer is not used).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from unimae.llm import unwrap_causal_lm
from unimae.spec import POOLINGS, split_prompt
from unimae.tokens import build_input_ids, truncate_ids

ECHO_TEMPLATE = ("Rewrite the sentence: ", ", rewritten sentence: ")  # Springer et al. 2024
PROMPTEOL_PROMPT = 'This sentence : "{text}" means in one word:"'  # Jiang et al. 2023
PROMPTEOL_TEMPLATE = split_prompt(PROMPTEOL_PROMPT)
PROMPTED_POOLINGS = ("eos", "last")  # the poolings a prompt may wrap (the others have their own layout)
TOKENPREPEND_LAYER_FRACTION = 0.25  # Fu et al.: layers 1..7-8 of Llama-2-7B's 32


@dataclass
class PooledInput:
    ids: list[int]
    start: int  # first pooled position
    end: int  # one past the last pooled position
    placeholder: int | None = None  # tokenprepend: position of the placeholder token


@dataclass(frozen=True)
class PromptTokens:
    """A prompt template as token ids: ``prefix`` before the text, ``suffix`` after it (each tokenized
    on its own, so the text's tokens are the same with and without the prompt)."""

    prefix: list[int]
    suffix: list[int]

    @classmethod
    def of(cls, tokenizer, prompt: str) -> PromptTokens:
        prefix, suffix = split_prompt(prompt)
        return cls(_tok(tokenizer, prefix), _tok(tokenizer, suffix))

    def wrap(self, text_ids: list[int], room: int, truncate: bool = True) -> list[int]:
        """``prefix + text + suffix`` in at most ``room`` ids, truncating only the text."""
        body = truncate_ids(text_ids, room - len(self.prefix) - len(self.suffix), truncate)
        return self.prefix + body + self.suffix


def _tok(tokenizer, s: str) -> list[int]:
    return tokenizer(s, add_special_tokens=False).input_ids if s else []


def pool(hidden: torch.Tensor, start: torch.Tensor, end: torch.Tensor, reduction: str) -> torch.Tensor:
    """Pool ``hidden`` ``(B, L, d)`` over spans ``[start, end)`` ``(B,)`` of padded positions -> ``(B, d)``.

    Positions outside the span never contribute (padding states may be NaN; they are not read).
    """
    if reduction == "last":
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), end - 1]
    if reduction == "mean":
        pos = torch.arange(hidden.shape[1], device=hidden.device)[None, :]
        inside = ((pos >= start[:, None]) & (pos < end[:, None]))[..., None]  # (B, L, 1)
        summed = torch.where(inside, hidden, torch.zeros((), dtype=hidden.dtype, device=hidden.device)).sum(1)
        return summed / inside.sum(1).clamp(min=1).to(hidden.dtype)
    raise ValueError(f"unknown reduction {reduction!r}")


def reduction_of(pooling: str) -> str:
    return "mean" if pooling in ("mean", "echo") else "last"


def check_prompt(pooling: str, prompt: str | None) -> None:
    """ValueError unless ``prompt`` is None or a valid template for ``pooling``."""
    if prompt is None:
        return
    if pooling not in PROMPTED_POOLINGS:
        raise ValueError(f"a prompt wraps the text of poolings {PROMPTED_POOLINGS}, not {pooling!r}")
    split_prompt(prompt)


def layout(
    pooling: str,
    tokenizer,
    text: str,
    max_length: int,
    eos_id: int,
    bos_id: int | None,
    truncate: bool = True,
    prompt: str | None = None,
) -> PooledInput:
    """Input ids of one text for ``pooling``, truncating the text (never the EOS or prompt) to max_length.

    prompt: a template holding ``{text}`` once, around the text of ``eos`` and ``last`` pooling.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; choose one of {POOLINGS}")
    check_prompt(pooling, prompt)
    head = [bos_id] if bos_id is not None else []
    text_ids = _tok(tokenizer, text)
    if prompt is not None:  # [BOS]? prefix text suffix, then EOS for eos pooling
        room = max_length - len(head) - (pooling == "eos")
        text_ids = PromptTokens.of(tokenizer, prompt).wrap(text_ids, room, truncate)
    if pooling == "eos":  # the layout training uses, from the one function that builds it
        ids = build_input_ids(text_ids, max_length, eos_id, bos_id, truncate)
        return PooledInput(ids, len(ids) - 1, len(ids))
    if pooling in ("last", "mean"):
        ids = head + truncate_ids(text_ids, max_length - len(head), truncate)
        return PooledInput(ids, len(head) if pooling == "mean" else len(ids) - 1, len(ids))
    if pooling == "echo":
        p1, p2 = _tok(tokenizer, ECHO_TEMPLATE[0]), _tok(tokenizer, ECHO_TEMPLATE[1])
        body = truncate_ids(text_ids, (max_length - len(head) - len(p1) - len(p2)) // 2, truncate)
        ids = head + p1 + body + p2 + body
        return PooledInput(ids, len(ids) - len(body), len(ids))
    template = PromptTokens.of(tokenizer, PROMPTEOL_PROMPT)
    if pooling == "tokenprepend":  # the placeholder goes right before the text
        template = PromptTokens(template.prefix + [placeholder_id(tokenizer, eos_id)], template.suffix)
    ids = head + template.wrap(text_ids, max_length - len(head), truncate)
    marker = len(head) + len(template.prefix) - 1 if pooling == "tokenprepend" else None
    return PooledInput(ids, len(ids) - 1, len(ids), marker)


def placeholder_id(tokenizer, eos_id: int) -> int:
    """The token that stands for Token Prepending's ``<PST>`` (its input embedding is read only by layer 0,
    whose output at that position is then overwritten): the tokenizer's unk token if it has one, else
    the EOS, so no vocabulary is added."""
    unk = getattr(tokenizer, "unk_token_id", None)
    return int(unk) if unk is not None else eos_id


# --- Token Prepending -------------------------------------------------------------------------------------


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The transformer layers of a causal LM (Llama/Qwen/Gemma ``model.layers``, GPT-2 ``transformer.h``)."""
    hf = unwrap_causal_lm(model)
    body = hf.get_decoder() if hasattr(hf, "get_decoder") else hf.base_model
    for name in ("layers", "h", "blocks"):
        layers = getattr(body, name, None)
        if isinstance(layers, nn.ModuleList):
            return layers
    raise ValueError(f"cannot find the transformer layers of {type(hf).__name__} for tokenprepend pooling")


def prepend_layers(n_layers: int, fraction: float = TOKENPREPEND_LAYER_FRACTION) -> range:
    """Layers whose input gets the placeholder replaced: ``1 .. k``, ``k = ceil(fraction * n_layers)``."""
    return range(1, max(1, min(n_layers - 1, math.ceil(fraction * n_layers))) + 1)


@contextlib.contextmanager
def token_prepending(
    model: nn.Module, placeholder: torch.Tensor, last: torch.Tensor, layers: range | None = None
) -> Iterator[None]:
    """While active, the input of each layer in ``layers`` has the placeholder's state replaced by the
    last token's state (that is, the previous layer's output at the last token).

    placeholder, last: ``(B,)`` positions in the padded batch. layers: default ``prepend_layers``.
    """
    stack = decoder_layers(model)
    rows = torch.arange(placeholder.shape[0])

    def replace(module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]  # (B, L, d), the previous layer's output
        dev = hidden.device
        hidden = hidden.clone()
        hidden[rows.to(dev), placeholder.to(dev)] = hidden[rows.to(dev), last.to(dev)]
        if args:
            return (hidden, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": hidden}

    chosen = prepend_layers(len(stack)) if layers is None else layers
    handles = [stack[i].register_forward_pre_hook(replace, with_kwargs=True) for i in chosen]
    try:
        yield
    finally:
        for h in handles:
            h.remove()
