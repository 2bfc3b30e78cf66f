"""Build the graphs of ``unimae.encoding.backends`` with the tools made for it (no hand-written graph).

ONNX: ``torch.onnx.export`` (the TorchScript exporter) of ``EmbeddingBody``, dynamic batch and length; int8:
``onnxruntime.quantization``'s ``MatMulNBitsQuantizer`` (8 bits, blocks of 32, int8 compute). OpenVINO: ``openvino.convert_model`` of that ONNX graph;
int8: ``nncf.compress_weights`` (INT8_ASYM, data-free, what optimum-intel's 8-bit weight config runs).
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import torch

from unimae.encoding.backends import (
    GRAPH_FILES,
    INPUTS,
    OUTPUT,
    EmbeddingBody,
    _require,
    runtime_of,
    write_backend_record,
)

OPSET = 18
EXTERNAL_DATA_BYTES = 1_500_000_000  # protobuf files stop at 2 GiB: bigger weights go beside the graph


def _external(llm: torch.nn.Module) -> bool:
    return sum(p.numel() * p.element_size() for p in llm.parameters()) > EXTERNAL_DATA_BYTES


def export_onnx(llm: torch.nn.Module, file: Path, attention: str = "causal") -> Path:
    """Write the fp32 ONNX graph of ``llm``'s body to ``file`` (``input_ids``, ``attention_mask`` -> states).

    The TorchScript exporter (``dynamo=False``), as optimum uses: on the default model it exports in 8 s and
    matches PyTorch to 8e-5; the dynamo exporter took 88 s and was 0.1 off in the hidden states.
    """
    _require("onnx")
    body = EmbeddingBody(llm.float().eval(), attention)
    ids = torch.tensor([[5, 6, 7, 8, 9, 10, 11, 12], [5, 6, 7, 8, 9, 10, 11, 12]])
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # one left-padded row: nothing about the padding is baked in as a constant
    file.parent.mkdir(parents=True, exist_ok=True)
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow on shapes
        torch.onnx.export(
            body,
            (ids, mask),
            str(file),
            input_names=list(INPUTS),
            output_names=[OUTPUT],
            dynamic_axes={name: {0: "batch", 1: "sequence"} for name in INPUTS},
            opset_version=OPSET,
            dynamo=False,
            external_data=_external(llm),
        )
    return file


# onnx-int8: MatMul weights in int8 per block of this many input channels; at run time ONNX Runtime
# quantizes each activation row per block of the same size and multiplies in int8 (docs/backends.md).
ONNX_INT8_BLOCK = 32


def quantize_onnx(src: Path, dst: Path) -> Path:
    """int8 weights for every MatMul with constant weights (``MatMulNBitsQuantizer``, 8 bits, symmetric,
    blocks of ``ONNX_INT8_BLOCK``), run with ``accuracy_level`` 4: activations quantized per row and block
    at run time, int8 dot products.

    Not ``quantize_dynamic``: it quantizes each MatMul's whole activation tensor with one scale, and this
    LLM's activations have outliers (``mlp.down_proj``'s above all): min cosine 0.61 on short texts against
    PyTorch fp32; per row and block: 0.998 (``benchmarks/onnx_int8_variants.py``). The embedding table
    (Gather) stays fp32.
    """
    _require("onnx_ir")  # the quantizer's own dependency, named here rather than in its ImportError
    onnx = _require("onnx")
    nbits = _require("onnxruntime.quantization.matmul_nbits_quantizer")
    dst.parent.mkdir(parents=True, exist_ok=True)
    quantizer = nbits.MatMulNBitsQuantizer(
        onnx.load(str(src)), bits=8, block_size=ONNX_INT8_BLOCK, is_symmetric=True, accuracy_level=4
    )
    quantizer.process()
    external = src.with_name(src.name + ".data").exists()
    quantizer.model.save_model_to_file(str(dst), use_external_data_format=external)
    return dst


def convert_openvino(onnx_file: Path, dst: Path, int8: bool = False) -> Path:
    """OpenVINO IR (``.xml`` + ``.bin``) of an ONNX graph, fp32 weights, or int8 weights with ``int8``."""
    ov = _require("openvino")
    model = ov.convert_model(str(onnx_file))
    if int8:
        nncf = _require("nncf")
        model = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)
    dst.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(dst), compress_to_fp16=False)  # fp32 stays fp32 on disk
    return dst


def build_graph(llm: torch.nn.Module, folder: str | Path, backend: str, attention: str = "causal") -> Path:
    """Write ``backend``'s graph of ``llm`` into ``folder/onnx`` or ``folder/openvino`` with its record."""
    folder, int8 = Path(folder), backend.endswith("-int8")
    sub, name = GRAPH_FILES[runtime_of(backend)]
    target = folder / sub / name
    with tempfile.TemporaryDirectory(prefix="unimae-onnx-") as stage:
        onnx_file = Path(stage) / "model.onnx"
        if runtime_of(backend) == "onnx" and not int8:
            onnx_file = target
        export_onnx(llm, onnx_file, attention)
        if runtime_of(backend) == "onnx" and int8:
            quantize_onnx(onnx_file, target)
        elif runtime_of(backend) == "openvino":
            convert_openvino(onnx_file, target, int8)
    how = {
        "onnx": f"torch.onnx.export (TorchScript, opset {OPSET})",
        "onnx-int8": f"+ onnxruntime MatMulNBits (8 bits, block {ONNX_INT8_BLOCK}, symmetric, accuracy_level 4)",
        "openvino": "openvino.convert_model of the ONNX graph, fp32",
        "openvino-int8": "+ nncf.compress_weights INT8_ASYM",
    }[backend]
    write_backend_record(folder, backend, attention=attention, made_with=how, torch=torch.__version__)
    return target
