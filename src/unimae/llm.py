"""The two ways every part of unimae touches a Hugging Face causal LM: unwrap it, run its body."""

from __future__ import annotations

import torch
from torch import nn

from unimae.tokens import position_ids


def unwrap_causal_lm(llm: nn.Module) -> nn.Module:
    """The Hugging Face ``*ForCausalLM`` inside a peft wrapper (or the model itself)."""
    return llm.get_base_model() if hasattr(llm, "get_base_model") else llm


def last_hidden_states(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    attention: torch.Tensor | None = None,
) -> torch.Tensor:
    """Last-layer hidden states ``(B, L, d)`` (final norm applied) of a causal LM's body.

    input_ids, attention_mask: ``(B, L)``; positions count real tokens only, so left and right padding
    give the same states. ``attention``: an optional 4-D mask ``(B, 1, L, L)`` that replaces the causal
    one (MNTP's bidirectional attention); by default the 2-D ``attention_mask`` is passed.
    """
    hf = unwrap_causal_lm(model)
    out = hf.base_model(
        input_ids=input_ids,
        attention_mask=attention if attention is not None else attention_mask,
        position_ids=position_ids(attention_mask),
        use_cache=False,
    )
    return out.last_hidden_state
