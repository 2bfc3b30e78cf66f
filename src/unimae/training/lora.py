"""LoRA's down-projection without fp32 copies of its input, for LLMs stored in bf16 / fp16.

peft computes ``B(A(dropout(x.to(fp32))))`` in each adapted layer: with fp32 adapters over a bf16 model
it casts the layer's input ``x`` (T, d_in) to fp32 once per adapted layer, and autograd keeps that copy
(4 bytes a value) and, with ``lora_dropout > 0``, the dropped-out copy and the dropout's fp32 noise on a
CPU (8 bytes a value). On the default model that is 1.14 of the 1.94 GiB a bf16 forward saves
(docs/large-models.md). :class:`LoraDown` replaces ``A`` and the dropout with one autograd function that
saves ``x`` as the model gave it (the tensor the frozen layer saves anyway, so no new memory) and a 1-byte
bool keep mask, and recomputes ``dropout(x.float()) @ A^T`` in backward.

Numerics: with ``lora_dropout`` 0 the losses and gradients equal peft's. With dropout the mask is drawn
as CPU ``F.dropout`` draws it (``bernoulli_(1 - p)`` on an fp32 tensor of x's shape), so on a CPU the
results equal peft's too; on CUDA peft's fused dropout draws another stream (still inverted dropout).
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
        xf = x.to(weight.dtype)  # (..., d_in), a transient fp32 copy: freed when this returns
        keep = None
        if training and p > 0:
            # The draw of CPU F.dropout (fp32 noise, bernoulli_(1 - p)), kept as 1 byte a value.
            keep = torch.empty_like(xf).bernoulli_(1 - p).bool()
            xf = _drop(xf, keep, p)
        ctx.p = p
        ctx.save_for_backward(x, weight, keep)
        return F.linear(xf, weight)  # (..., r)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight, keep = ctx.saved_tensors
        xf = x.to(weight.dtype)
        if keep is not None:
            xf = _drop(xf, keep, ctx.p)
        grad_x = grad_w = None
        if ctx.needs_input_grad[1]:
            grad_w = grad.reshape(-1, grad.shape[-1]).T @ xf.reshape(-1, xf.shape[-1])  # (r, d_in)
        if ctx.needs_input_grad[0]:
            grad_x = grad @ weight  # (..., d_in)
            if keep is not None:
                grad_x = _drop(grad_x, keep, ctx.p)
            grad_x = grad_x.to(x.dtype)
        return grad_x, grad_w, None, None


def _drop(t: torch.Tensor, keep: torch.Tensor, p: float) -> torch.Tensor:
    """Inverted dropout with a given keep mask: ``t * keep / (1 - p)``, the scale rounded as F.dropout's."""
    return t * keep.to(t.dtype).div_(1 - p)


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
