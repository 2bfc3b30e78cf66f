"""SmoothQuant before int8 (``unimae.encoding.smoothquant``) and the onnx-int8 recipes that use it.

Smoothing must leave the model's function unchanged (it only moves scale between activations and
weights) and flatten an outlier channel; onnx-int8 uses it where the architecture allows and falls back to
per-block int8 weights when the parity check fails.
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import make_tiny_gpt2, make_tiny_llama

from unimae.encoding.encoder import Encoder
from unimae.encoding.smoothquant import decoder_layers, input_peaks, smooth
from unimae.llm import last_hidden_states


def _tiny_qwen2() -> torch.nn.Module:
    """A 2-layer Qwen2: biases on q/k/v (v's bias must be scaled with its rows)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=50,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    model = Qwen2ForCausalLM(config).eval()
    for layer in model.model.layers:  # random biases (they start at 0)
        for lin in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
            lin.bias.data.normal_()
    return model


def _states(model, ids):
    return last_hidden_states(model, ids, torch.ones_like(ids))


@pytest.mark.parametrize("make", ["llama", "qwen2"])
def test_smoothing_keeps_the_function_and_flattens_an_outlier_channel(make, tmp_path):
    if make == "llama":
        model = Encoder.from_pretrained(str(make_tiny_llama(tmp_path / "m")), device="cpu").model
    else:
        model = _tiny_qwen2()
    ids = torch.randint(3, 40, (3, 9))
    layer = decoder_layers(model)[1]
    with torch.no_grad():
        layer.input_layernorm.weight[5] *= 50  # an outlier channel in the q/k/v input
    before = _states(model, ids)
    peaks = input_peaks(model, lambda: _states(model, ids))
    assert set(peaks) == {
        f"{i}.{n}"
        for i in range(2)
        for n in ("self_attn.q_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.down_proj")
    }
    ratio = lambda p: float(p.max() / p.median())  # noqa: E731
    smooth(model, peaks, alpha=0.8)
    assert torch.allclose(_states(model, ids), before, atol=1e-4, rtol=1e-4)
    after = input_peaks(model, lambda: _states(model, ids))
    assert ratio(after["1.self_attn.q_proj"]) < ratio(peaks["1.self_attn.q_proj"]) / 5


def test_only_known_architectures_are_smoothed(tmp_path):
    gpt2 = Encoder.from_pretrained(str(make_tiny_gpt2(tmp_path / "g")), device="cpu").model
    assert decoder_layers(gpt2) is None
    assert decoder_layers(_tiny_qwen2()) is not None


def _ops(folder) -> dict[str, int]:
    import onnx

    ops: dict[str, int] = {}
    for node in onnx.load(str(folder / "onnx" / "model.onnx")).graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    return ops


def test_onnx_int8_recipes_by_architecture(tmp_path):
    """Llama: SmoothQuant, per-block int8 for down/v, dynamic int8 for the rest; GPT-2: per-block for all."""
    pytest.importorskip("onnxruntime")
    from unimae.export import export

    llama = export(make_tiny_llama(tmp_path / "l"), tmp_path / "l-int8", format="onnx-int8")
    record = json.loads((llama / "onnx" / "unimae_backend.json").read_text())
    assert record["made_with"].startswith("SmoothQuant") and record["parity"]["min_cosine"] >= 0.99
    ops = _ops(llama)
    assert ops["MatMulNBits"] == 4  # 2 layers x (down_proj, v_proj)
    assert ops.get("DynamicQuantizeMatMul", 0) + ops.get("MatMulInteger", 0) == 10  # q, k, o, gate, up
    gpt2 = export(make_tiny_gpt2(tmp_path / "g"), tmp_path / "g-int8", format="onnx-int8")
    record = json.loads((gpt2 / "onnx" / "unimae_backend.json").read_text())
    assert record["made_with"].startswith("onnxruntime MatMulNBits")
    assert "DynamicQuantizeMatMul" not in _ops(gpt2)  # (GPT-2's projections are Gemm: left fp32)


def test_onnx_int8_falls_back_to_blocks_below_the_floor(tmp_path, monkeypatch):
    """The SmoothQuant graph measured below the floor: rebuilt per block, and that one is kept."""
    from unimae.encoding import backend_build
    from unimae.export import export

    real, seen = backend_build.parity, []

    def first_fails(encoder, body, *args):
        figures = real(encoder, body, *args)
        seen.append(figures["min_cosine"])
        return {**figures, "min_cosine": 0.5} if len(seen) == 1 else figures

    monkeypatch.setattr(backend_build, "parity", first_fails)
    out = export(make_tiny_llama(tmp_path / "l"), tmp_path / "int8", format="onnx-int8")
    record = json.loads((out / "onnx" / "unimae_backend.json").read_text())
    assert len(seen) == 2 and record["made_with"].startswith("onnxruntime MatMulNBits")
    assert record["parity"]["min_cosine"] == seen[1] and "DynamicQuantizeMatMul" not in _ops(out)
