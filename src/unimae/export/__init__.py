"""Export a trained run or any causal LM: the one place every export format lives.

    from unimae.export import export
    export("runs/default")                                   # -> runs/default/model (causal-lm)
    export("runs/default", "st-model", format="sentence-transformers")

Every format writes the model's ``EmbeddingSpec`` (``unimae.json``: pooling, attention, EOS token), so
``Encoder.from_pretrained`` embeds with an exported folder exactly as the run was trained. A format is a
function ``(llm, tokenizer, out_dir, spec) -> Path`` in ``FORMATS``. ``onnx``, ``onnx-int8``, ``openvino`` and
``openvino-int8`` are the sentence-transformers folder plus the model body as a graph for fast CPU
embeddings (``export/onnx.py``, ``unimae.encoding.backends``).

The target is checked before the model is loaded (``export/target.py``): a new or empty folder, or a
previous export of the same format; another non-empty folder only with ``overwrite=True``; a run folder
never. A disk error while writing (read-only, full) is a one-line ``DiskError``, the old folder intact.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from unimae.encoding.encoder import Encoder
from unimae.encoding.loading import resolve_model_path
from unimae.errors import UserError
from unimae.export.causal_lm import save_causal_lm
from unimae.export.onnx import BACKEND_FORMATS, INT8_MIN_COSINE, backend_writer, check_min_cosine
from unimae.export.sentence_transformers import export_sentence_transformers, write_sentence_transformers
from unimae.export.target import check_export_target
from unimae.io import disk_errors
from unimae.spec import EmbeddingSpec
from unimae.training.checkpoint import find_checkpoint
from unimae.training.trained import load_trained

__all__ = ["FORMATS", "ExportResult", "export", "export_sentence_transformers", "save_causal_lm"]

FORMATS: dict[str, Callable[..., Path]] = {
    "causal-lm": save_causal_lm,
    "sentence-transformers": write_sentence_transformers,
    **{name: backend_writer(name) for name in BACKEND_FORMATS},
}


@dataclass(frozen=True)
class ExportResult:
    """An export that was written: ``str()`` is the line ``unimae export`` prints."""

    source: str | Path
    output: Path  # the folder ``export`` returned
    format: str  # a key of ``FORMATS``

    @property
    def loader(self) -> str:
        """What loads the folder, in words."""
        if self.format == "causal-lm":
            return "AutoModelForCausalLM"
        if self.format == "sentence-transformers":
            return "SentenceTransformer"
        backend = self.format.removesuffix("-int8")
        return f'SentenceTransformer(..., backend="{backend}") and Encoder'

    def __str__(self) -> str:
        return f"exported {self.source} to {self.output} ({self.format}; loads with {self.loader})"


def export(
    source: str | Path,
    output: str | Path | None = None,
    format: str = "causal-lm",
    overwrite: bool = False,
    min_cosine: float = INT8_MIN_COSINE,
) -> Path:
    """Export ``source`` in ``format``; returns the folder written.

    ``source``: a run folder (its latest checkpoint is rebuilt, LoRA merged, decoder dropped) or any model
    (folder, .gguf, packaged alias, hub id). ``output`` defaults to ``RUN/model`` for a run's causal-lm
    export and is required otherwise. ``output`` must be new, empty or a previous export of the same
    format; ``overwrite``: replace another non-empty folder too (never a training run folder).
    ``min_cosine``: int8 formats only: refuse the export (nothing written) when its min cosine against
    PyTorch fp32 on a few built-in sentences is below this; 0 writes it whatever the figure
    (``export/onnx.py``).
    """
    if format not in FORMATS:
        raise UserError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    check_min_cosine(min_cosine)
    run = _is_run(source)
    if output is None:
        if not (run and format == "causal-lm"):
            raise UserError(f"give -o/--output: where to write the {format} folder")
        output = Path(source) / "model"
    output = check_export_target(source, output, format, overwrite)
    llm, tokenizer, spec = load_trained(source) if run else _load_model(str(source))
    checks = {"min_cosine": min_cosine} if format.endswith("-int8") else {}
    with disk_errors(output):
        return FORMATS[format](llm, tokenizer, output, spec, **checks)


def _is_run(source: str | Path) -> bool:
    """A unimae run folder to rebuild from its checkpoint (not one whose checkpoint is gone but model/ stays)."""
    path = Path(source)
    if not (path.is_dir() and (path / "config.yaml").is_file()):
        return False
    return find_checkpoint(path) is not None or not (path / "model" / "config.json").is_file()


def _load_model(source: str) -> tuple:
    """``(llm, tokenizer, spec)`` of any model; the spec says how it embeds, keeping recorded provenance."""
    encoder = Encoder.from_pretrained(source, device="cpu")
    path = Path(resolve_model_path(source))
    recorded = (EmbeddingSpec.load(path) if path.is_dir() else None) or EmbeddingSpec()
    spec = encoder.spec.replace(
        max_length=recorded.max_length or encoder.max_length,  # the training length, when recorded
        normalize=recorded.normalize,
        trained_from=recorded.trained_from,
        objective=recorded.objective,
        steps=recorded.steps,
    )
    return encoder.model, encoder.tokenizer, spec
