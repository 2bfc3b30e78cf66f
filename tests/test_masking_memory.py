"""The blocked, float32-only masks of objective/masking.py against the code they replaced, bit for bit.

The reference below is the previous implementation, kept verbatim: noise through float64, the whole
``(B, L, L)`` noise tensor at once, and a double argsort for ranks. The new code must give the same
masks (the golden-loss test depends on it), including where two noise values tie in float32, while
its temporaries stay bounded for long inputs and no float64 (absent on Apple GPUs) is ever made.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from unimae.objective import masking
from unimae.objective.masking import example_keys, hash_uniform, mar_mask, mrc_visibility

# --- the previous implementation (reference) ---------------------------------------------------------


def _ref_hash_uniform(key: torch.Tensor, *counters: torch.Tensor) -> torch.Tensor:
    h = masking._mix32(key)
    for c in counters:
        h = masking._mix32(h ^ masking._mix32(c + 0x9E3779B9))
    return h.to(torch.float64).div(2.0**32).to(torch.float32)


def _ref_keep_lowest(noise: torch.Tensor, candidates: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    noise = noise.masked_fill(~candidates, 2.0)
    ranks = noise.argsort(dim=-1).argsort(dim=-1)
    return (ranks < count.unsqueeze(-1)) & candidates


def _ref_mar_mask(keys: torch.Tensor, maskable: torch.Tensor, ratio: float) -> torch.Tensor:
    pos = torch.arange(maskable.shape[1])
    noise = _ref_hash_uniform(keys[:, None], torch.full_like(pos, 1)[None, :], pos[None, :])
    return _ref_keep_lowest(noise, maskable, torch.round(maskable.sum(-1) * ratio).long())


def _ref_mrc_visibility(keys: torch.Tensor, key_valid: torch.Tensor, ratio: float) -> torch.Tensor:
    pos = torch.arange(key_valid.shape[1])
    eye = pos[:, None] == pos[None, :]
    candidates = key_valid[:, None, :] & ~eye[None] & (pos > 0)[None, None, :]
    noise = _ref_hash_uniform(
        keys[:, None, None], torch.full_like(pos, 2)[None, :, None], pos[None, :, None], pos[None, None, :]
    )
    count = torch.round(candidates.sum(-1) * (1.0 - ratio)).long()
    visible = _ref_keep_lowest(noise, candidates, count)
    visible[:, :, 0] = True
    return visible


# --- inputs --------------------------------------------------------------------------------------------


def _inputs(B: int, L: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Example keys, decoder key_valid (slot 0 = h_eos, padding, some holes) and MAR maskable, ``(B, L)``."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, L + 1, (B,), generator=g)
    pos = torch.arange(L)[None, :]
    key_valid = (pos < lengths[:, None]) & (torch.rand(B, L, generator=g) > 0.1)
    key_valid[:, 0] = True
    maskable = (pos >= 1) & (pos < (lengths - 1)[:, None])
    return example_keys(seed, 3 * seed + 1, torch.arange(B) + 11 * seed), key_valid, maskable


SHAPES = [(1, 2), (3, 5), (8, 17), (4, 64), (16, 65), (2, 300)]
RATIOS = [0.0, 0.15, 0.2, 0.5, 0.8, 1.0]


@pytest.mark.parametrize("block", [None, 64])  # default blocks, and blocks of one or a few rows
@pytest.mark.parametrize("B,L", SHAPES)
def test_mrc_visibility_equals_previous_implementation(B, L, block, monkeypatch):
    if block is not None:
        monkeypatch.setattr(masking, "_BLOCK_ELEMENTS", block)
    for seed in (0, 42):
        keys, key_valid, _ = _inputs(B, L, seed)
        for ratio in RATIOS:
            assert torch.equal(
                mrc_visibility(keys, key_valid, ratio), _ref_mrc_visibility(keys, key_valid, ratio)
            )


@pytest.mark.parametrize("B,L", SHAPES)
def test_mar_mask_equals_previous_implementation(B, L):
    for seed in (0, 42):
        keys, _, maskable = _inputs(B, L, seed)
        for ratio in RATIOS:
            assert torch.equal(mar_mask(keys, maskable, ratio), _ref_mar_mask(keys, maskable, ratio))


@pytest.mark.parametrize("L", [5, 17, 64, 300, 2000])
def test_keep_lowest_breaks_ties_as_before_whole_and_in_row_blocks(L):
    g = torch.Generator().manual_seed(L)
    noise = torch.randint(0, 4, (3, 40, L), generator=g).float() / 4  # four values: ties everywhere
    candidates = torch.rand(3, 40, L, generator=g) < 0.8
    count = torch.round(candidates.sum(-1) * 0.5).long()
    # in many rows a tie sits exactly at the cut, so the tie order decides the mask there
    cut = noise.masked_fill(~candidates, 2.0).sort(dim=-1).values
    at_cut = cut.gather(-1, (count - 1).clamp(min=0)[..., None]) == cut.gather(-1, count[..., None])
    assert (at_cut.squeeze(-1) & (count > 0)).float().mean() > 0.25
    ref = _ref_keep_lowest(noise, candidates, count)
    assert torch.equal(masking._keep_lowest(noise, candidates, count), ref)
    blocks = [
        masking._keep_lowest(noise[:, r : r + 7], candidates[:, r : r + 7], count[:, r : r + 7])
        for r in range(0, 40, 7)
    ]
    assert torch.equal(torch.cat(blocks, dim=1), ref)


def test_hash_float32_conversion_is_exact():
    g = torch.Generator().manual_seed(0)
    h = torch.randint(0, 2**32, (1_000_000,), generator=g, dtype=torch.int64)
    # edges: 0, the top (rounds up to 1.0), the first values that round to 1.0, exact halfway cases
    edges = torch.tensor([0, 1, 2**16 - 1, 2**16, 2**31, 2**31 + 64, 2**31 + 192, 2**32 - 129, 2**32 - 128])
    h = torch.cat([h, edges, torch.tensor([2**32 - 1])])
    expected = h.to(torch.float64).div(2.0**32).to(torch.float32)
    assert torch.equal(masking._unit_float32(h), expected)
    assert expected[-1] == 1.0 and expected[-2] == 1.0 and expected[-3] < 1.0  # the edges are edges
    keys = torch.arange(1000)
    assert torch.equal(
        hash_uniform(keys, torch.tensor(2), keys[:, None]),
        _ref_hash_uniform(keys, torch.tensor(2), keys[:, None]),
    )


class _NoFloat64(torch.overrides.TorchFunctionMode):
    """Fails on any torch call that returns a float64 tensor (Apple GPUs have no float64)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if isinstance(out, torch.Tensor):
            assert out.dtype != torch.float64, f"{func} made a float64 tensor"
        return out


def test_masks_make_no_float64():
    keys, key_valid, maskable = _inputs(4, 33, 0)
    with _NoFloat64():
        mrc_visibility(keys, key_valid, 0.5)
        mar_mask(keys, maskable, 0.5)
    with pytest.raises(AssertionError, match="float64"), _NoFloat64():
        _ref_hash_uniform(keys)  # the check can fail


_PEAK_SCRIPT = """
import resource, torch
from unimae.objective import masking
masking._BLOCK_ELEMENTS = {block}
B, L = {B}, {L}
keys = masking.example_keys(0, 0, torch.arange(B))
key_valid = torch.ones(B, L, dtype=torch.bool)
masking.mrc_visibility(keys, key_valid[:, :64], 0.5)  # load kernels before the baseline
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
vis = masking.mrc_visibility(keys, key_valid, 0.5)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)  # KiB -> bytes (Linux)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss is in KiB on Linux only")
def test_mrc_visibility_peak_memory_is_bounded():
    """B=2, L=2048 with 2**18-element blocks: the peak grows by the 8 MiB bool result plus a few
    block-sized temporaries (2 MiB each as int64), where one full int64 (B, L, L) tensor alone is 64 MiB."""
    B, L, block = 2, 2048, 1 << 18
    script = _PEAK_SCRIPT.format(block=block, B=B, L=L)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    grown = int(out.stdout.split()[-1])
    result_bytes = B * L * L
    assert grown < result_bytes + 16 * block * 8, f"peak RSS grew by {grown / 2**20:.0f} MiB"
