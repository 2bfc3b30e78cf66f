"""The ``onnx``, ``onnx-int8``, ``openvino`` and ``openvino-int8`` exports: fast CPU embeddings.

Each is the sentence-transformers folder (``export/sentence_transformers.py``: the tokenizer appends the EOS,
``lasttoken`` pooling, Normalize) plus the model body as a graph where sentence-transformers' backends
look for it, and ``unimae.json``:

    onnx/model.onnx                  onnx, onnx-int8 (int8: SmoothQuant + ONNX Runtime int8, backend_build)
    openvino/openvino_model.xml/.bin openvino, openvino-int8 (int8: NNCF weight compression)
    <graph folder>/unimae_backend.json   which of the four it is, how it was made, its measured parity

So ``SentenceTransformer(folder, backend="onnx")`` (or ``"openvino"``) embeds without unimae, and
``Encoder.from_pretrained(folder)`` picks the graph's backend by itself. How the graphs are built (and
why the EOS pooling stays outside them): ``unimae.encoding.backends``.

An int8 export is checked before it is written: its vectors of built-in sentences against the model's own
PyTorch fp32 vectors (``unimae.encoding.backend_build.build_checked_graph``). Below ``min_cosine`` the
export is refused with the figure (``refuse_below``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from unimae.encoding.backend_build import build_checked_graph
from unimae.encoding.backends import INT8_MIN_COSINE, runtime_of
from unimae.encoding.encoder import Encoder
from unimae.errors import UserError
from unimae.export.sentence_transformers import export_sentence_transformers
from unimae.spec import EmbeddingSpec

BACKEND_FORMATS = ("onnx", "onnx-int8", "openvino", "openvino-int8")


def refuse_below(figures: dict, backend: str, min_cosine: float) -> None:
    """``UserError`` with the figure when an int8 graph's min cosine (``build_checked_graph``) is below
    ``min_cosine``."""
    if figures and figures["min_cosine"] < min_cosine:
        raise UserError(
            f"the {backend} graph's min cosine against PyTorch fp32 is {figures['min_cosine']:.4f} on "
            f"{figures['texts']} built-in sentences, below --min-cosine {min_cosine:g}; nothing was written. "
            f"Export an fp32 format ({runtime_of(backend)}), or pass --min-cosine "
            f"{np.floor(figures['min_cosine'] * 1000) / 1000:g} (0: any) to write it anyway"
        )


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
    fp32 on built-in sentences (``backend_build.PARITY_TEXTS``) is below ``min_cosine`` (0 to 1; 0 writes it whatever the figure).
    """
    check_min_cosine(min_cosine)
    encoder = Encoder.from_spec(llm, tokenizer, spec, device="cpu")

    def add_graph(folder: Path) -> None:
        refuse_below(build_checked_graph(encoder, folder, backend, min_cosine), backend, min_cosine)
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
