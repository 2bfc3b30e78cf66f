"""Build the graphs of ``unimae.encoding.backends`` with the tools made for it (no hand-written graph).

ONNX: ``torch.onnx.export`` (the TorchScript exporter) of ``EmbeddingBody``, dynamic batch and length; int8:
``onnxruntime.quantization`` (``MatMulNBitsQuantizer`` and ``quantize_dynamic``, after SmoothQuant where the
architecture allows; ``build_onnx_int8``). OpenVINO: ``openvino.convert_model`` of that ONNX graph; int8:
``nncf.compress_weights`` (INT8_ASYM, data-free, what optimum-intel's 8-bit weight config runs). int8 graphs
are checked against PyTorch fp32 on built-in sentences (``build_checked_graph``).
"""

from __future__ import annotations

import json
import logging
import tempfile
import warnings
from contextlib import contextmanager
from copy import deepcopy
from pathlib import Path

import numpy as np
import torch

from unimae.encoding.backends import (
    BACKEND_FILE,
    GRAPH_FILES,
    INPUTS,
    OUTPUT,
    EmbeddingBody,
    _require,
    load_body,
    runtime_of,
    write_backend_record,
)
from unimae.encoding.smoothquant import decoder_layers, input_peaks, smooth
from unimae.io import atomic_write_json

log = logging.getLogger(__name__)

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
    # eval() on the wrapper too: the exporter puts the module back in its own mode afterwards, and a fresh
    # wrapper's is training, which would switch dropout on in ``llm`` (GPT-2's) for whoever uses it next
    body = EmbeddingBody(llm.float().eval(), attention).eval()
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


# onnx-int8 (docs/backends.md, "onnx-int8: what lost its quality"). Two recipes, fastest first:
#   smoothquant: SmoothQuant (alpha 0.8) on a copy of the model, then int8 weights per block for the
#                projections still too sensitive (BLOCK_PARTS) and ONNX Runtime's dynamic int8 MatMul (one
#                activation scale per tensor, the fastest kernel) for the rest: min cosine 0.995, 4.3x torch
#   blocks:      int8 weights per block for every MatMul: min cosine 0.998, 2.2x torch; any architecture
ONNX_INT8_BLOCK = 32  # weights and activations quantized per block of this many input channels
SMOOTHQUANT_ALPHA = 0.8
BLOCK_PARTS = ("down_proj", "v_proj")
CALIBRATION_TEXTS = 128  # held-out Wikipedia sentences whose activations set SmoothQuant's scales


def matmul_names(file: Path, parts: tuple[str, ...] = ("",)) -> list[str]:
    """Names of the MatMul nodes of the ONNX graph ``file`` whose name holds one of ``parts``."""
    onnx = _require("onnx")
    nodes = onnx.load(str(file), load_external_data=False).graph.node
    return [n.name for n in nodes if n.op_type == "MatMul" and any(part in n.name for part in parts)]


def _has_external_data(file: Path) -> bool:
    return file.with_name(file.name + ".data").exists()


def quantize_blocks(src: Path, dst: Path, exclude: list[str] | None = None) -> Path:
    """int8 weights, per block of ``ONNX_INT8_BLOCK`` input channels, for every MatMul with constant weights
    but ``exclude`` (``MatMulNBitsQuantizer``, 8 bits, symmetric), run with ``accuracy_level`` 4: ONNX
    Runtime quantizes each activation row per block at run time and multiplies in int8."""
    _require("onnx_ir")  # the quantizer's own dependency, named here rather than in its ImportError
    onnx = _require("onnx")
    nbits = _require("onnxruntime.quantization.matmul_nbits_quantizer")
    dst.parent.mkdir(parents=True, exist_ok=True)
    quantizer = nbits.MatMulNBitsQuantizer(
        onnx.load(str(src)),
        bits=8,
        block_size=ONNX_INT8_BLOCK,
        is_symmetric=True,
        accuracy_level=4,
        nodes_to_exclude=exclude,
    )
    quantizer.process()
    quantizer.model.save_model_to_file(str(dst), use_external_data_format=_has_external_data(src))
    return dst


class _QuantizerNotes(logging.Filter):
    """Drops ONNX Runtime's quantizer notes below ERROR sent to the root logger (``logging.warning``): a
    suggestion to pre-process and one line per tensor its shape inference left untyped, about 30 lines per
    export that ask nothing of the user."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or "onnxruntime" not in record.pathname


@contextmanager
def quiet_quantizer():
    """While inside: ``_QuantizerNotes`` on the root logger (records of other loggers are not touched)."""
    notes = _QuantizerNotes()
    logging.getLogger().addFilter(notes)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(notes)


def quantize_rest_dynamic(src: Path, dst: Path) -> Path:
    """ONNX Runtime's dynamic quantization of the MatMuls ``src`` still has in fp32: int8 weights per output
    channel, each activation tensor quantized with one scale at run time (its fastest int8 MatMul)."""
    quantization = _require("onnxruntime.quantization")
    dst.parent.mkdir(parents=True, exist_ok=True)
    with quiet_quantizer():
        quantization.quantize_dynamic(
            str(src),
            str(dst),
            weight_type=quantization.QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul"],
            use_external_data_format=_has_external_data(src),
        )
    return dst


def int8_recipes(llm: torch.nn.Module) -> tuple[str, ...]:
    """The onnx-int8 recipes for ``llm``, fastest first: SmoothQuant only for the architectures it knows."""
    return ("smoothquant", "blocks") if decoder_layers(llm) is not None else ("blocks",)


def smoothed_copy(encoder) -> torch.nn.Module:
    """A SmoothQuant copy of ``encoder``'s model (``unimae.encoding.smoothquant``), its scales from the
    activations of ``CALIBRATION_TEXTS`` held-out Wikipedia sentences embedded one at a time."""
    from unimae.data.wiki import wiki_sentences

    texts = wiki_sentences("heldout")[:CALIBRATION_TEXTS]
    encode = lambda: encoder.encode(texts, batch_size=1, show_progress_bar=False)  # noqa: E731
    peaks = input_peaks(encoder.model, encode)
    copy = deepcopy(encoder.model).float()
    smooth(copy, peaks, SMOOTHQUANT_ALPHA)
    return copy


def build_onnx_int8(encoder, stage: Path, target: Path, recipe: str) -> str:
    """Write the onnx-int8 graph of ``encoder``'s model by ``recipe`` to ``target`` (``stage``: a scratch
    folder); returns how it was made."""
    fp32 = stage / recipe / "model.onnx"
    if recipe == "blocks":
        quantize_blocks(export_onnx(encoder.model, fp32, encoder.attention), target)
        return f"onnxruntime MatMulNBits (8 bits, block {ONNX_INT8_BLOCK}, symmetric, accuracy_level 4)"
    export_onnx(smoothed_copy(encoder), fp32, encoder.attention)
    others = [n for n in matmul_names(fp32) if n not in matmul_names(fp32, BLOCK_PARTS)]
    quantize_rest_dynamic(quantize_blocks(fp32, stage / recipe / "blocks.onnx", exclude=others), target)
    return (
        f"SmoothQuant alpha {SMOOTHQUANT_ALPHA} ({CALIBRATION_TEXTS} calibration sentences); onnxruntime "
        f"MatMulNBits (8 bits, block {ONNX_INT8_BLOCK}, accuracy_level 4) for {', '.join(BLOCK_PARTS)}, "
        "quantize_dynamic (QInt8 per channel) for the other MatMuls"
    )


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


def build_graph(encoder, folder: str | Path, backend: str, recipe: str | None = None) -> Path:
    """Write ``backend``'s graph of ``encoder``'s model into ``folder/onnx`` or ``folder/openvino`` with its
    record. ``recipe``: onnx-int8's (``int8_recipes``; default the fastest for the model)."""
    folder, llm, attention = Path(folder), encoder.model, encoder.attention
    sub, name = GRAPH_FILES[runtime_of(backend)]
    target = folder / sub / name
    how = {
        "onnx": f"torch.onnx.export (TorchScript, opset {OPSET})",
        "openvino": "openvino.convert_model of the ONNX graph, fp32",
        "openvino-int8": "+ nncf.compress_weights INT8_ASYM",
    }.get(backend)
    with tempfile.TemporaryDirectory(prefix="unimae-onnx-") as stage:
        if backend == "onnx-int8":
            how = build_onnx_int8(encoder, Path(stage), target, recipe or int8_recipes(llm)[0])
        elif backend == "onnx":
            export_onnx(llm, target, attention)
        else:
            convert_openvino(
                export_onnx(llm, Path(stage) / "model.onnx", attention), target, "int8" in backend
            )
    write_backend_record(folder, backend, attention=attention, made_with=how, torch=torch.__version__)
    return target


# Built-in texts of the int8 parity check: short ones first (int8 errs most on them), then longer ones.
PARITY_TEXTS = (
    "Hi.",
    "A dog.",
    "Thanks!",
    "Where is the station?",
    "The cat sat on the mat.",
    "Stock markets fell sharply on Monday.",
    "She plays the violin in a small orchestra.",
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.",
    "def add(a, b):\n    return a + b",
    "The committee postponed its decision until the next meeting, citing missing reports.",
    "After three days of heavy rain, the river rose above its banks and flooded the low streets of the "
    "old town, where shop owners carried their goods to the upper floors.",
    "Large language models are trained to predict the next token; with a suitable objective, the hidden "
    "state of a final token can also serve as an embedding of the whole sentence for retrieval, "
    "clustering and classification.",
)


def parity(encoder, body, texts: tuple[str, ...] = PARITY_TEXTS) -> dict:
    """``{"min_cosine", "mean_cosine", "texts"}`` of ``body``'s vectors against ``encoder``'s PyTorch ones.

    ``body``: a backend runtime (``unimae.encoding.backends.load_body``). Each text is embedded alone and
    in one batch of all (int8 activations are quantized per batch, so the batch changes the vectors).
    """
    saved = encoder.backend, encoder.runtime
    encoder.backend, encoder.runtime = "torch", None
    try:
        ref = encoder.encode(list(texts), batch_size=1, normalize_embeddings=True)
        encoder.backend, encoder.runtime = "graph", body
        cosines = [
            (encoder.encode(list(texts), batch_size=size, normalize_embeddings=True) * ref).sum(-1)
            for size in (1, len(texts))
        ]
    finally:
        encoder.backend, encoder.runtime = saved
    cos = np.concatenate(cosines)
    return {"min_cosine": float(cos.min()), "mean_cosine": float(cos.mean()), "texts": len(texts)}


def build_checked_graph(encoder, folder: str | Path, backend: str, min_cosine: float) -> dict:
    """``build_graph``, then for an int8 backend its ``parity``, recorded in ``unimae_backend.json``; returns
    the figures (``{}`` for fp32). onnx-int8 tries ``int8_recipes`` fastest first and keeps the first whose
    min cosine reaches ``min_cosine`` (else the last). The caller refuses a graph below the floor."""
    recipes = int8_recipes(encoder.model) if backend == "onnx-int8" else (None,)
    figures: dict = {}
    for recipe in recipes:
        build_graph(encoder, folder, backend, recipe)
        if not backend.endswith("-int8"):
            return figures
        figures = parity(encoder, load_body(folder, backend))
        if figures["min_cosine"] >= min_cosine:
            break
        log.warning("%s recipe %s: min cosine %.4f", backend, recipe, figures["min_cosine"])
    record_file = Path(folder) / GRAPH_FILES[runtime_of(backend)][0] / BACKEND_FILE
    record = json.loads(record_file.read_text(encoding="utf-8"))
    atomic_write_json(record_file, {**record, "parity": {**figures, "against": "torch fp32"}})
    return figures
