"""The ``onnx``, ``onnx-int8``, ``openvino`` and ``openvino-int8`` exports: fast CPU embeddings.

Each is the sentence-transformers folder (``export/sentence_transformers.py``: the tokenizer appends the EOS,
``lasttoken`` pooling, Normalize) plus the model body as a graph where sentence-transformers' backends
look for it, and ``unimae.json``:

    onnx/model.onnx                  onnx, onnx-int8 (int8: ONNX Runtime MatMulNBits, 8-bit blocks)
    openvino/openvino_model.xml/.bin openvino, openvino-int8 (int8: NNCF weight compression)
    <graph folder>/unimae_backend.json   which of the four it is, how it was made, its measured parity

So ``SentenceTransformer(folder, backend="onnx")`` (or ``"openvino"``) embeds without unimae, and
``Encoder.from_pretrained(folder)`` picks the graph's backend by itself. How the graphs are built (and
why the EOS pooling stays outside them): ``unimae.encoding.backends``.

An int8 export is checked before it is written: its vectors of ``PARITY_TEXTS`` against the model's own
PyTorch fp32 vectors (``check_parity``). Below ``min_cosine`` the export is refused with the figure.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from unimae.encoding.backend_build import build_graph
from unimae.encoding.backends import BACKEND_FILE, GRAPH_FILES, load_body, runtime_of
from unimae.encoding.encoder import Encoder
from unimae.errors import UserError
from unimae.export.sentence_transformers import export_sentence_transformers
from unimae.io import atomic_write_json
from unimae.spec import EmbeddingSpec

BACKEND_FORMATS = ("onnx", "onnx-int8", "openvino", "openvino-int8")
INT8_MIN_COSINE = 0.99  # the default floor of an int8 export's min cosine against PyTorch fp32

# Built-in texts of the parity check: short ones first (int8 errs most on them), then longer ones.
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


def parity(encoder: Encoder, body, texts: tuple[str, ...] = PARITY_TEXTS) -> dict:
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


def check_parity(encoder: Encoder, folder: Path, backend: str, min_cosine: float) -> dict:
    """Measure ``backend``'s graph in ``folder`` (``parity``), record it in ``unimae_backend.json``, and
    raise ``UserError`` with the figure when its min cosine is below ``min_cosine``."""
    figures = parity(encoder, load_body(folder, backend))
    record_file = folder / GRAPH_FILES[runtime_of(backend)][0] / BACKEND_FILE
    record = json.loads(record_file.read_text(encoding="utf-8"))
    atomic_write_json(record_file, {**record, "parity": {**figures, "against": "torch fp32"}})
    if figures["min_cosine"] < min_cosine:
        raise UserError(
            f"the {backend} graph's min cosine against PyTorch fp32 is {figures['min_cosine']:.4f} on "
            f"{figures['texts']} built-in sentences, below --min-cosine {min_cosine:g}; nothing was written. "
            f"Export an fp32 format ({runtime_of(backend)}), or pass --min-cosine "
            f"{np.floor(figures['min_cosine'] * 1000) / 1000:g} (0: any) to write it anyway"
        )
    return figures


def check_min_cosine(min_cosine: float) -> float:
    """``min_cosine`` if it is between 0 and 1, else ``UserError``."""
    if not 0 <= min_cosine <= 1:
        raise UserError(f"--min-cosine must be between 0 and 1, got {min_cosine}")
    return min_cosine


def write_backend_export(
    llm,
    tokenizer,
    out_dir: str | Path,
    spec: EmbeddingSpec,
    backend: str,
    min_cosine: float = INT8_MIN_COSINE,
) -> Path:
    """Write the sentence-transformers folder with ``backend``'s graph of ``llm`` to ``out_dir``, atomically.

    int8 backends: refused (``UserError``, nothing written) when the graph's min cosine against PyTorch
    fp32 on ``PARITY_TEXTS`` is below ``min_cosine`` (0 to 1; 0 writes it whatever the figure).
    """
    check_min_cosine(min_cosine)
    encoder = Encoder.from_spec(llm, tokenizer, spec, device="cpu")

    def add_graph(folder: Path) -> None:
        build_graph(encoder.model, folder, backend, encoder.attention)
        if backend.endswith("-int8"):
            check_parity(encoder, folder, backend, min_cosine)
        spec.replace(max_length=spec.max_length or encoder.max_length).save(folder)

    return export_sentence_transformers(encoder, out_dir, normalize=spec.normalize, extra=add_graph)


def backend_writer(backend: str):
    """The ``FORMATS`` entry of one backend: ``(llm, tokenizer, out_dir, spec, min_cosine) -> Path``."""

    def write(
        llm, tokenizer, out_dir: str | Path, spec: EmbeddingSpec, min_cosine: float = INT8_MIN_COSINE
    ) -> Path:
        return write_backend_export(llm, tokenizer, out_dir, spec, backend, min_cosine)

    write.__doc__ = f"The ``{backend}`` export format: see ``write_backend_export``."
    return write
