"""Poolings: how a text becomes model input, and which hidden states become its vector.

Each pooling is (1) a way to lay out the input ids of one text, with the span ``[start, end)`` of
positions it pools, and (2) a reduction over that span: ``last`` takes the state at ``end - 1``,
``mean`` averages the span. The reduction is a pure function of tensors.

=========== ====================================================== =========
pooling     input                                                  reduction
=========== ====================================================== =========
eos         ``[BOS]? text EOS`` (UniMAE)                            last (EOS)
last        ``[BOS]? text``                                         last
mean        ``[BOS]? text``, span = the text                        mean
echo        ``[BOS]? <prompt> text <prompt> text``, span = 2nd copy mean
prompteol   ``[BOS]? This sentence : "text" means in one word:"``  last
=========== ====================================================== =========
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unimae.spec import POOLINGS
from unimae.tokens import build_input_ids, truncate_ids

ECHO_TEMPLATE = ("Rewrite the sentence: ", ", rewritten sentence: ")  # Springer et al. 2024
PROMPTEOL_TEMPLATE = ('This sentence : "', '" means in one word:"')  # Jiang et al. 2023


@dataclass
class PooledInput:
    ids: list[int]
    start: int  # first pooled position
    end: int  # one past the last pooled position


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


def layout(
    pooling: str,
    tokenizer,
    text: str,
    max_length: int,
    eos_id: int,
    bos_id: int | None,
    truncate: bool = True,
) -> PooledInput:
    """Input ids of one text for ``pooling``, truncating the text (never the EOS or prompt) to max_length."""
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; choose one of {POOLINGS}")

    def tok(s: str) -> list[int]:
        return tokenizer(s, add_special_tokens=False).input_ids

    head = [bos_id] if bos_id is not None else []
    text_ids = tok(text)
    if pooling == "eos":  # the layout training uses, from the one function that builds it
        ids = build_input_ids(text_ids, max_length, eos_id, bos_id, truncate)
        return PooledInput(ids, len(ids) - 1, len(ids))
    if pooling in ("last", "mean"):
        ids = head + truncate_ids(text_ids, max_length - len(head), truncate)
        return PooledInput(ids, len(head) if pooling == "mean" else len(ids) - 1, len(ids))
    if pooling == "echo":
        p1, p2 = tok(ECHO_TEMPLATE[0]), tok(ECHO_TEMPLATE[1])
        body = truncate_ids(text_ids, (max_length - len(head) - len(p1) - len(p2)) // 2, truncate)
        ids = head + p1 + body + p2 + body
        return PooledInput(ids, len(ids) - len(body), len(ids))
    p1, p2 = tok(PROMPTEOL_TEMPLATE[0]), tok(PROMPTEOL_TEMPLATE[1])
    body = truncate_ids(text_ids, max_length - len(head) - len(p1) - len(p2), truncate)
    ids = head + p1 + body + p2
    return PooledInput(ids, len(ids) - 1, len(ids))
