"""Fast CPU backends for embeddings: the model body as an ONNX Runtime or OpenVINO graph, fp32 or int8.

A backend replaces only the model body: ``(input_ids, attention_mask)`` ``(B, L)`` -> last-layer hidden
states ``(B, L, d)``. Tokenizing, the EOS layout and pooling stay ``Encoder``'s own, so every pooling and
both padding sides work as with PyTorch. The graph computes positions from the attention mask inside
(``unimae.llm.last_hidden_states``), so left and right padding give the same states, and it holds no
pooling (no ArgMax for ONNX Runtime to reject; pooling never reads a padding state).

=============== ============================================================================================
backend         body
=============== ============================================================================================
torch           the PyTorch model (default)
onnx            ``onnx/model.onnx``, exported with ``torch.onnx.export``, run by ONNX Runtime
onnx-int8       the same graph with int8 MatMul weights in blocks of 32 input channels (``MatMulNBits``);
                ONNX Runtime quantizes activations per row and block at run time and multiplies in int8
                (min cosine 0.998 against PyTorch fp32 on the default model; docs/backends.md)
openvino        ``openvino/openvino_model.xml``, converted from that ONNX graph, run by OpenVINO at f32
                precision (OpenVINO's CPU default would be bf16 where the CPU has it)
openvino-int8   the same after NNCF's int8 weight compression (data-free); OpenVINO quantizes
                activations at run time, per group of 128 channels, and runs the rest in bf16 where the
                CPU has bf16 instructions (``openvino_config``: 2x OpenVINO's f32 / 32-channel
                default on 30-word texts here, min cosine 0.997 against PyTorch fp32; docs/backends.md)
=============== ============================================================================================

Graphs live in ``onnx/`` or ``openvino/`` of an exported folder (``unimae export --format onnx-int8``),
with ``unimae_backend.json`` saying which backend they are; for any other model they are built once on
first use into the unimae cache (``backend_runtime.py``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from unimae.errors import UserError
from unimae.io import atomic_write_json
from unimae.llm import bidirectional_mask, last_hidden_states

BACKENDS = ("torch", "onnx", "onnx-int8", "openvino", "openvino-int8")
GRAPH_FILES = {"onnx": ("onnx", "model.onnx"), "openvino": ("openvino", "openvino_model.xml")}
BACKEND_FILE = "unimae_backend.json"  # beside the graph: which backend it is
INPUTS = ("input_ids", "attention_mask")
OUTPUT = "last_hidden_state"
INSTALL_HINT = "pip install 'unimae[fast]' (onnxruntime, onnx, onnx-ir, openvino, nncf)"
INT8_MIN_COSINE = 0.99  # the default floor of an int8 graph's min cosine against PyTorch fp32


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    return backend


def runtime_of(backend: str) -> str:
    """``onnx-int8`` -> ``onnx``: the runtime (and graph folder) a backend uses."""
    return check_backend(backend).removesuffix("-int8")


def exported_backends(folder: str | Path) -> list[str]:
    """The backends whose graphs an exported folder holds (as its ``unimae_backend.json`` files say)."""
    found = []
    for sub, _ in GRAPH_FILES.values():
        record = Path(folder) / sub / BACKEND_FILE
        if record.is_file():
            found.append(json.loads(record.read_text(encoding="utf-8"))["backend"])
    return found


class EmbeddingBody(torch.nn.Module):
    """The graph that is exported: ``(input_ids, attention_mask)`` ``(B, L)`` -> hidden states ``(B, L, d)``.

    The same function the PyTorch path calls (positions from the mask), plus MNTP's bidirectional mask.
    """

    def __init__(self, llm: torch.nn.Module, attention: str = "causal"):
        super().__init__()
        self.llm, self.attention = llm, attention

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        full = None
        if self.attention == "bidirectional":
            full = bidirectional_mask(attention_mask, self.llm.get_input_embeddings().weight.dtype)
        return last_hidden_states(self.llm, input_ids, attention_mask, full)


def _require(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"this backend needs the '{module}' package: {INSTALL_HINT}") from None


def passive_wait() -> bool:
    """Whether idle threads should sleep rather than spin: ``OMP_WAIT_POLICY=PASSIVE``, which the command
    line sets by default (``unimae.cli.apply_thread_defaults``); ONNX Runtime's own pool follows it."""
    return os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE"


class OnnxRuntimeBody:
    """An ONNX graph in ONNX Runtime: ``(ids, mask)`` ``(B, L)`` int64 tensors -> ``(B, L, d)`` float32.

    Threads: ``threads``, else torch's count; they spin while idle unless ``passive_wait()``.
    """

    def __init__(self, file: str | Path, threads: int | None = None):
        ort = _require("onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()  # as torch: OMP_NUM_THREADS
        options.inter_op_num_threads = 1
        if passive_wait():
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        feed = {"input_ids": input_ids.cpu().numpy(), "attention_mask": attention_mask.cpu().numpy()}
        return torch.from_numpy(self.session.run([OUTPUT], feed)[0])


# openvino-int8's run-time settings, chosen for speed (the fp32 graph stays at f32 for parity).
# Activations are quantized to int8 per group of this many channels (OpenVINO's CPU default: 32).
OPENVINO_INT8_GROUP_SIZE = 128


def openvino_config(core, backend: str, threads: int | None) -> dict:
    """The CPU plugin's settings for ``backend``: f32 for ``openvino`` (parity with PyTorch: OpenVINO's
    CPU default may be bf16, 1e-2 off on a tiny model); for ``openvino-int8``, bf16 where the CPU has bf16
    instructions and activation quantization per ``OPENVINO_INT8_GROUP_SIZE`` channels. ``core``: an
    ``openvino.Core``, asked what the CPU can do."""
    config = {
        "INFERENCE_PRECISION_HINT": "f32",
        "INFERENCE_NUM_THREADS": threads or torch.get_num_threads(),
        "PERFORMANCE_HINT": "LATENCY",  # one request at a time, all threads on it
    }
    if backend == "openvino-int8":
        has_bf16 = "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        config["INFERENCE_PRECISION_HINT"] = "bf16" if has_bf16 else "f32"
        config["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = str(OPENVINO_INT8_GROUP_SIZE)
    return config


# A batch of at least this many texts per thread is split over one OpenVINO stream per thread.
OPENVINO_STREAM_MIN_ROWS = 4


def split_rows(n: int, parts: int) -> list[slice]:
    """``parts`` contiguous, nearly equal slices of ``range(n)`` (fewer when ``n < parts``)."""
    parts = max(1, min(parts, n))
    bounds = [round(i * n / parts) for i in range(parts + 1)]
    return [slice(a, b) for a, b in zip(bounds, bounds[1:])]


class OpenVinoBody:
    """An OpenVINO IR on the CPU plugin (settings: ``openvino_config``): same contract as ``OnnxRuntimeBody``.

    With ``threads`` > 1, a batch of at least ``OPENVINO_STREAM_MIN_ROWS`` texts a thread is split into one
    part a thread, run side by side on as many single-thread streams (a second compiled model, made on
    first use): small matrix products use one core well and two cores poorly (batch 32 of short texts,
    1.33x from the second core in one stream; docs/backends.md). Smaller batches run on all threads at once.
    """

    def __init__(self, file: str | Path, threads: int | None = None, backend: str = "openvino"):
        self.ov = _require("openvino")
        self.core, self.file = self.ov.Core(), str(file)
        self.config = openvino_config(self.core, backend, threads)
        self.compiled = self.core.compile_model(self.file, "CPU", self.config)
        self.streams = int(self.config["INFERENCE_NUM_THREADS"])
        self._queue = None  # the streams' compiled model and requests, made on first use

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        feed = {"input_ids": input_ids.cpu().numpy(), "attention_mask": attention_mask.cpu().numpy()}
        if self.streams > 1 and len(input_ids) >= OPENVINO_STREAM_MIN_ROWS * self.streams:
            return self._in_streams(feed)
        return torch.from_numpy(self.compiled(feed)[OUTPUT].copy())

    def _in_streams(self, feed: dict) -> torch.Tensor:
        if self._queue is None:
            config = {**self.config, "PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": str(self.streams)}
            self._queue = self.ov.AsyncInferQueue(
                self.core.compile_model(self.file, "CPU", config), self.streams
            )
        parts = split_rows(len(feed["input_ids"]), self.streams)
        out: list = [None] * len(parts)

        def done(request, i):
            out[i] = request.get_tensor(OUTPUT).data.copy()

        self._queue.set_callback(done)
        for i, rows in enumerate(parts):
            self._queue.start_async({k: v[rows] for k, v in feed.items()}, userdata=i)
        self._queue.wait_all()
        return torch.from_numpy(np.concatenate(out))


def graph_file(folder: str | Path, backend: str) -> Path:
    sub, name = GRAPH_FILES[runtime_of(backend)]
    return Path(folder) / sub / name


def load_body(folder: str | Path, backend: str, threads: int | None = None):
    """The runtime body of ``backend`` for the graph in ``folder`` (an export or a cache entry)."""
    if runtime_of(backend) == "onnx":
        return OnnxRuntimeBody(graph_file(folder, backend), threads)
    return OpenVinoBody(graph_file(folder, backend), threads, backend)


def write_backend_record(folder: Path, backend: str, **details) -> None:
    """``unimae_backend.json`` beside the graph: what the graph is and how it was made."""
    sub, name = GRAPH_FILES[runtime_of(backend)]
    atomic_write_json(folder / sub / BACKEND_FILE, {"backend": backend, "file": name, **details})
