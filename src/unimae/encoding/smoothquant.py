"""SmoothQuant (Xiao et al., ICML 2023) for Llama-style models, before their int8 ONNX graph is built.

ONNX Runtime's fast int8 MatMul quantizes a whole activation tensor with one scale, and a few input
channels of an LLM's projections carry values 10-100x the others, which then swamp the rest. SmoothQuant
divides each input channel ``j`` of a projection by

    s_j = max|x_j| ** alpha / max|W_:j| ** (1 - alpha)

and multiplies the weight's column ``j`` by it: ``(x / s) @ (W * s).T == x @ W.T``, so the model computes
the same function while its activations get flatter and its weights take the outliers (int8 weights are
quantized per channel, which copes). The division is folded into the op that writes the input, so the graph
gains no op:

    q/k/v_proj  input_layernorm.weight            (RMSNorm: ``weight * normalized``)
    gate/up     post_attention_layernorm.weight
    down_proj   up_proj's output rows (and bias)  (``act(gate) * up`` is linear in ``up``)
    o_proj      v_proj's output rows (and bias)   (attention is linear in V; one scale per kv channel, the
                                                   largest over the query heads that share it)

``max|x_j|``: the largest input seen on calibration texts. Only architectures whose norms and MLP have this
shape (``SMOOTHABLE``) are smoothed; Gemma's norms scale by ``1 + weight`` and GPT-2 has no gated MLP.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

SMOOTHABLE = ("llama", "mistral", "qwen2", "qwen3")  # config.model_type values
WATCHED = ("self_attn.q_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.down_proj")


def decoder_layers(llm: torch.nn.Module) -> torch.nn.ModuleList | None:
    """The decoder layers of a Llama-style causal LM (``llm.model.layers``), None for another model."""
    config = getattr(llm, "config", None)
    if getattr(config, "model_type", None) not in SMOOTHABLE:
        return None
    return getattr(getattr(llm, "model", None), "layers", None)


@torch.no_grad()
def input_peaks(llm: torch.nn.Module, run: Callable[[], object]) -> dict[str, torch.Tensor]:
    """``{"<layer>.<WATCHED name>": max|x| per input channel (d_in,)}`` over every forward pass ``run()``
    makes through ``llm`` (e.g. encoding calibration texts one at a time)."""
    peaks: dict[str, torch.Tensor] = {}

    def record(name: str):
        def hook(module, args):
            x = args[0].detach().abs().reshape(-1, args[0].shape[-1]).amax(0).float()
            peaks[name] = torch.maximum(peaks[name], x) if name in peaks else x

        return hook

    hooks = [
        layer.get_submodule(name).register_forward_pre_hook(record(f"{i}.{name}"))
        for i, layer in enumerate(decoder_layers(llm))
        for name in WATCHED
    ]
    try:
        run()
    finally:
        for h in hooks:
            h.remove()
    return peaks


def smoothing_scales(x_peak: torch.Tensor, linears: list[torch.nn.Linear], alpha: float) -> torch.Tensor:
    """``s`` ``(d_in,)``: ``max|x_j|^alpha / max|W_:j|^(1-alpha)``, the weight peak taken over ``linears``
    (the projections that read the same input)."""
    w_peak = torch.stack([lin.weight.abs().amax(0) for lin in linears]).amax(0).float()
    return (x_peak.clamp(min=1e-5) ** alpha / w_peak.clamp(min=1e-5) ** (1 - alpha)).clamp(min=1e-5)


def _divide_rows(linear: torch.nn.Linear, s: torch.Tensor) -> None:
    """Output row ``j`` (and bias ``j``) of ``linear`` divided by ``s_j``: its output channels scaled."""
    linear.weight.div_(s[:, None].to(linear.weight.dtype))
    if linear.bias is not None:
        linear.bias.div_(s.to(linear.bias.dtype))


def _multiply_columns(linears: list[torch.nn.Linear], s: torch.Tensor) -> None:
    for lin in linears:
        lin.weight.mul_(s.to(lin.weight.dtype))


@torch.no_grad()
def smooth(llm: torch.nn.Module, peaks: dict[str, torch.Tensor], alpha: float) -> None:
    """SmoothQuant ``llm`` in place (see the module's docstring); ``peaks`` from ``input_peaks``.

    The model computes the same function up to float rounding (tested); only its int8 error changes.
    """
    for i, layer in enumerate(decoder_layers(llm)):
        attn, mlp = layer.self_attn, layer.mlp
        qkv = [attn.q_proj, attn.k_proj, attn.v_proj]
        s = smoothing_scales(peaks[f"{i}.self_attn.q_proj"], qkv, alpha)
        layer.input_layernorm.weight.div_(s.to(layer.input_layernorm.weight.dtype))
        _multiply_columns(qkv, s)
        s = smoothing_scales(peaks[f"{i}.mlp.gate_proj"], [mlp.gate_proj, mlp.up_proj], alpha)
        layer.post_attention_layernorm.weight.div_(s.to(layer.post_attention_layernorm.weight.dtype))
        _multiply_columns([mlp.gate_proj, mlp.up_proj], s)
        s = smoothing_scales(peaks[f"{i}.mlp.down_proj"], [mlp.down_proj], alpha)
        _divide_rows(mlp.up_proj, s)
        _multiply_columns([mlp.down_proj], s)
        groups = attn.num_key_value_groups
        s = smoothing_scales(peaks[f"{i}.self_attn.o_proj"], [attn.o_proj], alpha)
        s = s.view(-1, groups, attn.head_dim).amax(1)  # (kv heads, head_dim): shared by a group's heads
        _divide_rows(attn.v_proj, s.reshape(-1))
        _multiply_columns([attn.o_proj], s[:, None, :].expand(-1, groups, -1).reshape(-1))
