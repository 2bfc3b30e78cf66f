"""LoRA's down-projection without fp32 copies of its input, for LLMs stored in bf16 / fp16.

peft computes ``B(A(dropout(x.to(fp32))))`` in each adapted layer: with fp32 adapters over a bf16 model
it casts the layer's input ``x`` (T, d_in) to fp32 once per adapted layer, and autograd keeps that copy
(4 bytes a value) and, with ``lora_dropout > 0``, the dropped-out copy and the dropout's fp32 noise on a
CPU (8 bytes a value). On the default model that is 1.14 of the 1.94 GiB a bf16 forward saves
(docs/large-models.md). :class:`LoraDown` replaces ``A`` and the dropout with one autograd function that
saves ``x`` as the model gave it (the tensor the frozen layer saves anyway, so no new memory) and a 1-byte
bool keep mask, and recomputes ``dropout(x.float()) @ A^T`` in backward.

Numerics: with ``lora_dropout`` 0 the losses and gradients equal peft's. With dropout the mask takes the
draws of CPU ``F.dropout`` (``bernoulli_(1 - p)`` over x's shape) and the dropout is applied in place on
the one fp32 copy (no full-size fp32 temporaries), so on a CPU the results equal peft's too; on CUDA
peft's fused dropout draws another stream (still inverted dropout).
The adapters' parameters and their names are peft's own, so checkpoints and ``merge_and_unload`` are
unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _DropoutLinear(torch.autograd.Function):
    """``dropout(x.to(w.dtype), p) @ w.T`` saving ``x`` (model dtype) and a bool keep mask, not fp32 copies."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, p: float, training: bool) -> torch.Tensor:
        keep = None
        if training and p > 0:
            # The draws of CPU F.dropout (bernoulli_(1 - p) over x's shape), kept as 1 byte a value.
            keep = torch.empty_like(x, dtype=torch.bool).bernoulli_(1 - p)
        ctx.p = p
        ctx.save_for_backward(x, weight, keep)
        return F.linear(_drop_(x.to(weight.dtype, copy=True), keep, p), weight)  # (..., r)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight, keep = ctx.saved_tensors
        grad_x = grad_w = None
        if ctx.needs_input_grad[1]:
            xf = _drop_(x.to(weight.dtype, copy=True), keep, ctx.p).reshape(-1, x.shape[-1])
            grad_w = grad.reshape(-1, grad.shape[-1]).T @ xf  # (r, d_in)
        if ctx.needs_input_grad[0]:
            grad_x = _drop_(grad @ weight, keep, ctx.p).to(x.dtype)  # (..., d_in)
        return grad_x, grad_w, None, None


def _drop_(t: torch.Tensor, keep: torch.Tensor | None, p: float) -> torch.Tensor:
    """Inverted dropout in place on a fresh tensor ``t``: ``t x keep / (1 - p)`` (``keep`` None: ``t``).

    In place, so no second full-size temporary; the scale is rounded once to t's dtype and multiplied
    in, as F.dropout's noise ``keep.div_(1 - p)`` is, so the values are F.dropout's.
    """
    if keep is not None:
        t.mul_(torch.ones((), dtype=t.dtype).div_(1 - p)).masked_fill_(~keep, 0)
    return t


class LoraDown(nn.Linear):
    """LoRA's ``A`` (``r x d_in``, no bias) with the adapter's dropout folded in: see the module docstring.

    It holds the very ``weight`` Parameter of the ``nn.Linear`` it replaces (state-dict names unchanged).
    """

    def __init__(self, a: nn.Linear, p: float):
        nn.Module.__init__(self)
        self.in_features, self.out_features = a.in_features, a.out_features
        self.weight = a.weight
        self.register_parameter("bias", None)
        self.p = p
        self.train(a.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (..., d_in) in the model's dtype -> (..., r) in the adapter's dtype."""
        return _DropoutLinear.apply(x, self.weight, self.p, self.training)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, dropout={self.p}"


def use_low_memory_lora(model: nn.Module) -> int:
    """Swap every peft LoRA layer's ``A`` and dropout in ``model`` for :class:`LoraDown`, in place.

    The layer's input then reaches ``A`` uncast (peft's ``cast_input_dtype_enabled``), and its dropout
    becomes the identity (``LoraDown`` applies it). Returns the number of adapters swapped.
    """
    n = 0
    for layer in model.modules():
        adapters = getattr(layer, "lora_A", None)
        if not isinstance(adapters, nn.ModuleDict) or not hasattr(layer, "lora_dropout"):
            continue
        if any(getattr(layer, "use_dora", {}).values()):
            raise ValueError("the low-memory LoRA path does not support DoRA")
        for name, a in adapters.items():
            if isinstance(a, LoraDown):
                continue
            if type(a) is not nn.Linear:
                raise ValueError(f"the low-memory LoRA path needs nn.Linear adapters, not {type(a).__name__}")
            drop = layer.lora_dropout[name]
            adapters[name] = LoraDown(a, drop.p if isinstance(drop, nn.Dropout) else 0.0)
            layer.lora_dropout[name] = nn.Identity()
            n += 1
        layer.cast_input_dtype_enabled = False  # x reaches LoraDown in the model's dtype
    return n
