"""Attention masks for embedding: the causal LM as trained, or bidirectional (MNTP-trained models)."""

from __future__ import annotations

import torch


def bidirectional_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Additive 4-D mask ``(B, 1, L, L)``: 0 where the key is a real token, the dtype's minimum elsewhere.

    ``attention_mask``: ``(B, L)``, 1 for real tokens. Hugging Face models use a 4-D mask as given, so
    passing it switches off the causal mask.
    """
    keys = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, L)
    B, L = attention_mask.shape
    full = keys.expand(B, 1, L, L)
    return torch.zeros(full.shape, dtype=dtype, device=attention_mask.device).masked_fill(
        ~full, torch.finfo(dtype).min
    )
