"""Random masks of UniMAE, sampled vectorized on the training device.

Randomness comes from a counter-based hash instead of a stateful generator: the noise for an
example is a pure function of (seed, step, example id, position). So masks are

* computed on whatever device the batch lives on, with no Python loop over rows;
* identical whichever process an example lands on, so one process and N processes with the same
  global batch see the same masks (and the same losses);
* reproducible on resume without saving generator state.
"""

from __future__ import annotations

import torch

_M32 = 0xFFFFFFFF


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer finalizer (lowbias32) on int64 tensors holding values in [0, 2**32)."""
    x = x & _M32
    x = ((x ^ (x >> 16)) * 0x7FEB352D) & _M32
    x = ((x ^ (x >> 15)) * 0x846CA68B) & _M32
    return x ^ (x >> 16)


def hash_uniform(key: torch.Tensor, *counters: torch.Tensor) -> torch.Tensor:
    """Uniform floats in [0, 1) from integer keys, broadcast over all arguments.

    ``key`` and every counter are int64 tensors (broadcastable); the result has their broadcast shape.
    The same inputs give the same output on every device.
    """
    h = _mix32(key)
    for c in counters:
        h = _mix32(h ^ _mix32(c + 0x9E3779B9))
    return h.to(torch.float64).div(2.0**32).to(torch.float32)


def example_keys(seed: int, step: int, example_ids: torch.Tensor) -> torch.Tensor:
    """One int64 key per example: ``(B,)`` from the run seed, the training step and the example ids."""
    base = _mix32(torch.tensor([seed], dtype=torch.int64, device=example_ids.device))
    base = _mix32(base ^ _mix32(torch.tensor([step], dtype=torch.int64, device=example_ids.device) + 1))
    return _mix32(base ^ _mix32(example_ids.to(torch.int64) + 7))


def _keep_lowest(noise: torch.Tensor, candidates: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """Select exactly ``count`` candidates per row, the ones with the lowest noise.

    noise, candidates: ``(..., L)``; count: ``(...)`` integer. Returns a bool mask ``(..., L)``.
    """
    noise = noise.masked_fill(~candidates, 2.0)  # non-candidates sort last
    ranks = noise.argsort(dim=-1).argsort(dim=-1)  # rank of each position within its row
    return (ranks < count.unsqueeze(-1)) & candidates


def mar_mask(keys: torch.Tensor, maskable: torch.Tensor, ratio: float) -> torch.Tensor:
    """Which input tokens MAR replaces by the mask token.

    keys: ``(B,)`` example keys; maskable: ``(B, L)`` bool, True for real text tokens (not padding, not
    BOS, never the appended EOS). Exactly ``round(ratio * n_i)`` of the ``n_i`` maskable tokens of row i
    are chosen. Returns ``(B, L)`` bool, True = replace with the mask token.
    """
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"mar_mask_ratio must be in [0, 1], got {ratio}")
    B, L = maskable.shape
    pos = torch.arange(L, device=maskable.device)
    noise = hash_uniform(keys[:, None], torch.full_like(pos, 1)[None, :], pos[None, :])  # (B, L)
    count = torch.round(maskable.sum(-1) * ratio).long()  # (B,)
    return _keep_lowest(noise, maskable, count)


def mrc_visibility(keys: torch.Tensor, key_valid: torch.Tensor, ratio: float) -> torch.Tensor:
    """The attention mask B of the tiny decoder: which key/value positions each query row may see.

    keys: ``(B,)`` example keys; key_valid: ``(B, L)`` bool over the decoder sequence, where position 0
    is ``h_eos`` and positions 1.. are the tokens (False for padding). Row i sees column 0 always,
    never itself, never padding, and exactly ``round((1 - ratio) * m)`` of the ``m`` other valid token
    columns. Returns ``(B, L, L)`` bool, True = visible (``M_ij = 0``), False = ``-inf``.
    """
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"mrc_mask_ratio must be in [0, 1], got {ratio}")
    B, L = key_valid.shape
    pos = torch.arange(L, device=key_valid.device)
    eye = pos[:, None] == pos[None, :]  # (L, L)
    not_first = (pos > 0)[None, :]  # (1, L)
    candidates = key_valid[:, None, :] & ~eye[None] & not_first[None]  # (B, L, L)
    noise = hash_uniform(
        keys[:, None, None], torch.full_like(pos, 2)[None, :, None], pos[None, :, None], pos[None, None, :]
    )
    count = torch.round(candidates.sum(-1) * (1.0 - ratio)).long()  # (B, L)
    visible = _keep_lowest(noise, candidates, count)
    visible[:, :, 0] = True  # h_eos is always visible, so no row is empty
    return visible
