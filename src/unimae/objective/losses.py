"""The two UniMAE losses as pure functions of tensors.

Both predict tokens through a vocabulary head. Logits over a large vocabulary at every position
dominate memory, so the cross-entropy is computed on the target positions only and, optionally, in
chunks that are recomputed in the backward pass (activation checkpointing), never materialising the
full ``(T, V)`` logit matrix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

IGNORE = -100

# Auto chunking keeps one chunk's fp32 logits (t, V) under this many bytes.
LOGIT_BUDGET_BYTES = 256 * 2**20


@dataclass
class TokenLoss:
    """Summed token cross-entropy and counts; ``sum / count`` is the mean loss."""

    sum: torch.Tensor  # scalar, differentiable
    count: torch.Tensor  # scalar long, number of target tokens
    correct: torch.Tensor  # scalar long, argmax predictions equal to the target

    @property
    def mean(self) -> torch.Tensor:
        return self.sum / self.count.clamp(min=1)


CHUNK_WORKING_SET_BYTES = 16
"""Bytes per logit a chunk holds at once: bf16 and fp32 logits, the log-softmax, two fp32 gradients."""


def auto_chunk_size(vocab_size: int, budget_bytes: int = LOGIT_BUDGET_BYTES, bytes_per_logit: int = 4) -> int:
    """Tokens per vocabulary-head chunk so that a chunk's ``(t, V)`` logits, at ``bytes_per_logit`` bytes
    an entry, fit ``budget_bytes``.

    With the default 4 bytes (the fp32 logits alone) a batch with ``T`` targets is chunked only when
    ``T x V x 4`` bytes exceed the budget: 8k targets x 128k vocabulary (4 GiB of logits, more with their
    gradient) goes 523 tokens at a time, while the default 135M model (49k vocabulary, at most 1k targets
    a batch) is never chunked. :func:`auto_logit_bytes` picks the bytes from the model's dtype.
    """
    return max(1, budget_bytes // (bytes_per_logit * vocab_size))


def auto_logit_bytes(model_dtype: str) -> int:
    """Bytes a logit counts in the automatic chunk size of a model stored in ``model_dtype``.

    fp32 models count the fp32 logits alone (4), so the default fp32 recipe is never chunked and keeps its
    numbers. A model stored in bf16 / fp16 is chosen to save memory, so the chunk's whole working set
    counts (:data:`CHUNK_WORKING_SET_BYTES`): 341 tokens for a 49k vocabulary, where unchunked a batch of
    577 targets would keep both losses' bf16 logits and fp32 log-softmax until backward.
    """
    return 4 if model_dtype == "fp32" else CHUNK_WORKING_SET_BYTES


def resolve_chunk_size(setting: int, vocab_size: int, bytes_per_logit: int = 4) -> int:
    """The ``loss_chunk_size`` to use: ``-1`` (auto) becomes :func:`auto_chunk_size`; 0 and N stay."""
    return auto_chunk_size(vocab_size, bytes_per_logit=bytes_per_logit) if setting < 0 else setting


def _ce_chunk(
    hidden: torch.Tensor, targets: torch.Tensor, head: Callable, bf16: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.autocast(hidden.device.type, dtype=torch.bfloat16, enabled=bf16):
        logits = head(hidden)
    logits = logits.float()  # (t, V); the softmax is always fp32
    loss = F.cross_entropy(logits, targets, reduction="sum")
    correct = (logits.argmax(-1) == targets).sum()
    return loss, correct


def token_cross_entropy(
    hidden: torch.Tensor,
    targets: torch.Tensor,
    head: Callable[[torch.Tensor], torch.Tensor],
    chunk_size: int = 0,
    bf16: bool = False,
) -> TokenLoss:
    """Cross-entropy of ``head(hidden)`` against ``targets`` at the positions where targets != -100.

    hidden: ``(..., d)``; targets: ``(...)`` long with -100 to ignore; head maps ``(t, d) -> (t, V)``.
    chunk_size > 0 computes the logits ``chunk_size`` tokens at a time and recomputes them in backward.
    bf16 computes the vocabulary matmul in bfloat16 (the log-softmax stays fp32).
    """
    keep = targets != IGNORE
    h = hidden[keep]  # (T, d): only target positions ever reach the head
    t = targets[keep]  # (T,)
    count = keep.sum()
    if h.shape[0] == 0:
        zero = hidden.sum() * 0.0
        return TokenLoss(zero, count, count * 0)
    if chunk_size <= 0 or h.shape[0] <= chunk_size:
        loss, correct = _ce_chunk(h, t, head, bf16)
        return TokenLoss(loss, count, correct)
    total, correct = hidden.new_zeros((), dtype=torch.float32), count * 0
    for start in range(0, h.shape[0], chunk_size):
        hc, tc = h[start : start + chunk_size], t[start : start + chunk_size]
        loss_c, correct_c = checkpoint(_ce_chunk, hc, tc, head, bf16, use_reentrant=False)
        total = total + loss_c
        correct = correct + correct_c
    return TokenLoss(total, count, correct)


def next_token_targets(targets: torch.Tensor) -> torch.Tensor:
    """Shift ``(B, L)`` token targets one to the left: position t is trained to predict token t + 1.

    The causal-LM convention (the state at t - 1 predicts token t) in one place; the last position has
    no next token and gets -100.
    """
    return torch.cat([targets[:, 1:], targets.new_full((targets.shape[0], 1), IGNORE)], dim=1)


def mar_targets(input_ids: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
    """Next-token targets of masked autoregression: position t predicts the CLEAN token at t + 1.

    input_ids: ``(B, L)`` clean ids; target_mask: ``(B, L)`` bool, True where the token is a target
    (real text tokens and, if configured, the appended EOS). Returns ``(B, L)`` with -100 elsewhere
    and at the last position.
    """
    return next_token_targets(input_ids.masked_fill(~target_mask, IGNORE))


def mar_loss(
    hidden: torch.Tensor,
    input_ids: torch.Tensor,
    target_mask: torch.Tensor,
    head: Callable,
    chunk_size: int = 0,
    bf16: bool = False,
) -> TokenLoss:
    """``L_MAR = sum_t CE(x_t | x~_<t)``: the LLM's states on the masked input predict the clean next token.

    hidden: ``(B, L, d)`` last-layer states of the LLM on the masked input.
    """
    return token_cross_entropy(hidden, mar_targets(input_ids, target_mask), head, chunk_size, bf16)


def mrc_loss(
    decoded: torch.Tensor, dec_targets: torch.Tensor, head: Callable, chunk_size: int = 0, bf16: bool = False
) -> TokenLoss:
    """``L_MRC = sum_t CE(x_t | A)``: row i of the tiny decoder's output reconstructs token x_i.

    decoded: ``(B, N+1, d)`` tiny-decoder outputs; dec_targets: ``(B, N+1)`` with -100 at row 0
    (the ``h_eos`` slot) and at positions that are not text tokens.
    """
    return token_cross_entropy(decoded, dec_targets, head, chunk_size, bf16)
