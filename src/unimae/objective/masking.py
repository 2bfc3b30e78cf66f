"""Random masks of UniMAE, sampled vectorized on the training device.

Randomness comes from a counter-based hash instead of a stateful generator: the noise for an
example is a pure function of (seed, step, example id, position). So masks are

* computed on whatever device the batch lives on, with no Python loop over rows;
* identical whichever process an example lands on, so one process and N processes with the same
  global batch see the same masks (and the same losses);
* reproducible on resume without saving generator state.

Memory stays bounded for long inputs: the MRC mask is built a block of query rows at a time, so the
int64 hash temporaries never exceed ``_BLOCK_ELEMENTS`` elements whatever B and L are; only the
``(B, L, L)`` bool result is full size. Everything is float32/int64, so it also runs on MPS (no float64).
"""

from __future__ import annotations

import torch

_M32 = 0xFFFFFFFF
_BLOCK_ELEMENTS = 1 << 22
"""Elements (B x query rows x L) of one block of the MRC mask: about 32 MB per int64 temporary."""


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer finalizer (lowbias32) on int64 tensors holding values in [0, 2**32)."""
    x = x & _M32  # a new tensor: the in-place steps below never touch the caller's, and allocate no more
    x ^= x >> 16
    x *= 0x7FEB352D
    x &= _M32
    x ^= x >> 15
    x *= 0x846CA68B  # the product may wrap int64; its low 32 bits, all we keep, are still exact
    x &= _M32
    x ^= x >> 16
    return x


def _absorb(h: torch.Tensor, *counters: torch.Tensor) -> torch.Tensor:
    """Fold integer counters into 32-bit hash states ``h`` (broadcast over all arguments)."""
    for c in counters:
        h = _mix32(h ^ _mix32(c + 0x9E3779B9))
    return h


def _unit_float32(h: torch.Tensor) -> torch.Tensor:
    """``h / 2**32`` rounded to the nearest float32, for int64 ``h`` in [0, 2**32), without float64.

    Apple GPUs have no float64. Each 16-bit half converts to float32 exactly and its scaling by a power
    of two is exact, so the one rounding is the addition's: round-to-nearest-even of the exact value,
    which is what converting the exact float64 quotient to float32 gives. (Values within 2**-25 of 1
    round to 1.0, in both.)
    """
    hi = (h >> 16).to(torch.float32).mul_(2.0**-16)
    return hi.add_((h & 0xFFFF).to(torch.float32).mul_(2.0**-32))


def hash_uniform(key: torch.Tensor, *counters: torch.Tensor) -> torch.Tensor:
    """Uniform floats in [0, 1] (1.0 with probability 2**-25) from integer keys, broadcast over all arguments.

    ``key`` and every counter are int64 tensors (broadcastable); the result has their broadcast shape.
    The same inputs give the same output on every device.
    """
    return _unit_float32(_absorb(_mix32(key), *counters))


def example_keys(seed: int, step: int, example_ids: torch.Tensor) -> torch.Tensor:
    """One int64 key per example: ``(B,)`` from the run seed, the training step and the example ids."""
    base = _mix32(torch.tensor([seed], dtype=torch.int64, device=example_ids.device))
    base = _mix32(base ^ _mix32(torch.tensor([step], dtype=torch.int64, device=example_ids.device) + 1))
    return _mix32(base ^ _mix32(example_ids.to(torch.int64) + 7))


def second_keys(keys: torch.Tensor) -> torch.Tensor:
    """An independent key per example ``(B,)`` from its first one: a second mask of the same step that
    does not repeat the first (the contrastive term's 'masked' view)."""
    return _mix32(keys ^ 0x9E3779B9)


def _keep_lowest(noise: torch.Tensor, candidates: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """Select exactly ``count`` candidates per row, the ones with the lowest noise.

    noise (float, < 2), candidates: ``(..., L)``; count: ``(...)`` integer. Returns a bool mask ``(..., L)``.
    One sort and a scatter: the first ``count`` places of each row's sorted order are kept. The sort is
    the same (unstable) ``argsort`` as ever, so two equal noise values at the cut break as they always did.
    """
    noise = noise.masked_fill(~candidates, 2.0)  # non-candidates sort last
    order = noise.argsort(dim=-1)  # (..., L) positions from lowest to highest noise
    first = torch.arange(noise.shape[-1], device=noise.device) < count.unsqueeze(-1)  # (..., L)
    keep = torch.zeros_like(candidates).scatter_(-1, order, first)
    return keep & candidates


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

    Entry (b, i, j) is decided by the noise ``hash(key_b, 2, i, j)``; rows are built a block at a time
    (``_BLOCK_ELEMENTS``), which changes no value, only the size of the temporaries.
    """
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"mrc_mask_ratio must be in [0, 1], got {ratio}")
    B, L = key_valid.shape
    pos = torch.arange(L, device=key_valid.device)
    # m_i: valid token columns (not column 0) other than i itself
    others = key_valid[:, 1:].sum(-1, keepdim=True) - (key_valid & (pos > 0)).long()  # (B, L)
    count = torch.round(others * (1.0 - ratio)).long()  # (B, L)
    row_hash = _absorb(_mix32(keys[:, None]), torch.full_like(pos, 2)[None, :], pos[None, :])  # (B, L)
    visible = torch.empty(B, L, L, dtype=torch.bool, device=key_valid.device)
    rows_per_block = max(1, _BLOCK_ELEMENTS // (B * L)) if B * L else L
    for r0 in range(0, L, rows_per_block):
        rows = pos[r0 : r0 + rows_per_block, None]  # (R, 1)
        candidates = key_valid[:, None, :] & (pos != rows) & (pos > 0)  # (B, R, L)
        noise = _unit_float32(_absorb(row_hash[:, r0 : r0 + rows_per_block, None], pos))  # (B, R, L)
        visible[:, r0 : r0 + rows_per_block] = _keep_lowest(
            noise, candidates, count[:, r0 : r0 + rows_per_block]
        )
    visible[:, :, 0] = True  # h_eos is always visible, so no row is empty
    return visible
