"""How every part of unimae touches a Hugging Face causal LM: unwrap it, run its body, mask its attention."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence

import torch
from torch import nn

from unimae.errors import UserError
from unimae.tokens import position_ids

log = logging.getLogger(__name__)

# Attention implementations that apply a custom 4-D additive mask as given (flash-attention kernels
# ignore it and stay causal, or fail).
MASK_HONOURING_ATTENTION = ("eager", "sdpa")


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
    return _body(unwrap_causal_lm(model), input_ids, attention_mask, attention).last_hidden_state


def _body(hf: nn.Module, input_ids, attention_mask, attention=None, **kwargs):
    """One pass of the Hugging Face model's body (no vocabulary head), positions counted over real tokens."""
    return hf.base_model(
        input_ids=input_ids,
        attention_mask=attention if attention is not None else attention_mask,
        position_ids=position_ids(attention_mask),
        use_cache=False,
        **kwargs,
    )


def layer_states(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    layers: Sequence[int],
    attention: torch.Tensor | None = None,
) -> torch.Tensor:
    """Hidden states ``(B, L, k, d)`` after each of ``layers`` (k of them) of a causal LM's body.

    ``layers`` index the model's ``hidden_states``: 0 is the embedding output, ``num_hidden_layers`` (or -1)
    the last layer. Every layer passes the body's final norm, as the last one does, so all are read on one
    scale and ``layers=[-1]`` gives ``last_hidden_states``. Inputs as in ``last_hidden_states``.
    """
    hf = unwrap_causal_lm(model)
    n = hf.config.get_text_config().num_hidden_layers
    picked = [i + n + 1 if i < 0 else i for i in layers]
    if not picked or any(not 0 <= i <= n for i in picked):
        raise UserError(
            f"layers must index 0..{n} (or -{n + 1}..-1) of this model's hidden states, got {list(layers)}"
        )
    norm = getattr(hf.base_model, "norm", None)
    hs = _body(hf, input_ids, attention_mask, attention, output_hidden_states=True).hidden_states
    # n + 1 states; the last one already normed
    return torch.stack([hs[i] if i == n or norm is None else norm(hs[i]) for i in picked], dim=2)


def bidirectional_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Additive 4-D mask ``(B, 1, L, L)``: 0 where the key is a real token, the dtype's minimum elsewhere.

    ``attention_mask``: ``(B, L)``, 1 for real tokens. Hugging Face models use a 4-D mask as given (with
    eager or sdpa attention), so passing it switches off the causal mask.
    """
    keys = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, L)
    B, L = attention_mask.shape
    full = keys.expand(B, 1, L, L)
    return torch.zeros(full.shape, dtype=dtype, device=attention_mask.device).masked_fill(
        ~full, torch.finfo(dtype).min
    )


def require_mask_honouring_attention(model: nn.Module, why: str) -> None:
    """Switch the model to sdpa unless its attention honours a 4-D additive mask (eager, sdpa).

    Bidirectional attention (MNTP training, and embedding with an MNTP-trained model) replaces the
    causal mask with a 4-D one; flash-attention kernels ignore such a mask (silently causal) or fail on
    it. ``why`` names what needs it, for the messages. Raises ``UserError`` when the model cannot switch.
    """
    hf = unwrap_causal_lm(model)
    impl = hf.config._attn_implementation
    if impl in MASK_HONOURING_ATTENTION:
        return
    hint = f"{why} needs bidirectional attention, which the model's attention '{impl}' cannot apply"
    try:
        hf.set_attn_implementation("sdpa")
    except (ValueError, ImportError) as e:
        raise UserError(
            f"{hint}, and switching it to sdpa failed ({e}); load it with eager or sdpa"
        ) from None
    if hf.config._attn_implementation not in MASK_HONOURING_ATTENTION:
        raise UserError(f"{hint}, and the model cannot switch to sdpa; load it with eager or sdpa attention")
    log.warning("%s: attention '%s' ignores a bidirectional mask; switched the model to sdpa", why, impl)


def weights_fingerprint(model: torch.nn.Module) -> str:
    """A short hash of every parameter and buffer (names, shapes, dtypes and values)."""
    return state_fingerprint(model.state_dict())


def base_weights_fingerprint(model: torch.nn.Module) -> str:
    """``weights_fingerprint`` of the base model under any LoRA adapters (peft's adapter weights left out,
    its ``base_layer`` names read as the plain model's), so a LoRA run and a full fine-tune of the same
    model agree."""
    state = unwrap_causal_lm(model).state_dict()
    return state_fingerprint({k.replace(".base_layer", ""): v for k, v in state.items() if "lora_" not in k})


def state_fingerprint(state: dict[str, torch.Tensor]) -> str:
    """A short hash of named tensors (names, shapes, dtypes and values)."""
    digest = hashlib.blake2b(digest_size=8)
    for name, tensor in sorted(state.items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()
