"""The ``onnx``, ``onnx-int8``, ``openvino`` and ``openvino-int8`` exports: fast CPU embeddings.

Each is the sentence-transformers folder (``export/sentence_transformers.py``: the tokenizer appends the EOS,
``lasttoken`` pooling, Normalize) plus the model body as a graph where sentence-transformers' backends
look for it, and ``unimae.json``:

    onnx/model.onnx                  onnx, onnx-int8 (int8: ONNX Runtime dynamic quantization)
    openvino/openvino_model.xml/.bin openvino, openvino-int8 (int8: NNCF weight compression)
    <graph folder>/unimae_backend.json   which of the four it is, how it was made

So ``SentenceTransformer(folder, backend="onnx")`` (or ``"openvino"``) embeds without unimae, and
``Encoder.from_pretrained(folder)`` picks the graph's backend by itself. How the graphs are built (and
why the EOS pooling stays outside them): ``unimae.encoding.backends``.
"""

from __future__ import annotations

from pathlib import Path

from unimae.encoding.backend_build import build_graph
from unimae.encoding.encoder import Encoder
from unimae.export.sentence_transformers import export_sentence_transformers
from unimae.spec import EmbeddingSpec

BACKEND_FORMATS = ("onnx", "onnx-int8", "openvino", "openvino-int8")


def write_backend_export(llm, tokenizer, out_dir: str | Path, spec: EmbeddingSpec, backend: str) -> Path:
    """Write the sentence-transformers folder with ``backend``'s graph of ``llm`` to ``out_dir``, atomically."""
    encoder = Encoder.from_spec(llm, tokenizer, spec, device="cpu")

    def add_graph(folder: Path) -> None:
        build_graph(encoder.model, folder, backend, encoder.attention)
        spec.replace(max_length=spec.max_length or encoder.max_length).save(folder)

    return export_sentence_transformers(encoder, out_dir, normalize=spec.normalize, extra=add_graph)


def backend_writer(backend: str):
    """The ``FORMATS`` entry of one backend: ``(llm, tokenizer, out_dir, spec) -> Path``."""

    def write(llm, tokenizer, out_dir: str | Path, spec: EmbeddingSpec) -> Path:
        return write_backend_export(llm, tokenizer, out_dir, spec, backend)

    write.__doc__ = f"The ``{backend}`` export format: see ``write_backend_export``."
    return write
