"""Which backend an ``Encoder`` runs on, and its graph: the one an export folder holds, or one built once
into the unimae cache (``backend_build.build_checked_graph``: int8 graphs checked against PyTorch) and
found there again by the weights it came from.

Apart from ``backends.py`` so that the graph builder, which uses ``backends.py``'s pieces, is imported by
neither of them in a circle.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from unimae.encoding.backends import (
    INT8_MIN_COSINE,
    check_backend,
    exported_backends,
    graph_file,
    load_body,
    runtime_of,
)
from unimae.errors import UserError
from unimae.io import atomic_dir
from unimae.paths import cache_dir

log = logging.getLogger(__name__)


def _cache_key(model_path: str, attention: str) -> str:
    """Which weights a cached graph was built from: the folder, and each file's size and mtime."""
    path = Path(model_path).resolve()
    stats = sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in path.iterdir() if f.is_file())
    return hashlib.sha256(f"{path}:{attention}:{stats}".encode()).hexdigest()[:16]


def cached_graph(encoder, model_path: str, backend: str) -> Path:
    """The folder holding ``backend``'s graph of ``encoder``'s model (loaded from ``model_path``), built on
    first use. An int8 graph below ``INT8_MIN_COSINE`` against PyTorch fp32 (``build_checked_graph``) is
    refused (``UserError``) and not cached."""
    from unimae.encoding.backend_build import build_checked_graph  # the exporters load only when building

    key = _cache_key(model_path, encoder.attention)
    target = cache_dir() / "backends" / f"{Path(model_path).name}-{key}" / backend
    if graph_file(target, backend).is_file():
        return target
    log.warning(
        "building the %s graph of %s once (about a minute); cached in %s", backend, model_path, target
    )
    with atomic_dir(target) as tmp:
        figures = build_checked_graph(encoder, tmp, backend, INT8_MIN_COSINE)
        if figures and figures["min_cosine"] < INT8_MIN_COSINE:
            raise UserError(
                f"the {backend} graph of {model_path} has min cosine {figures['min_cosine']:.4f} against "
                f"PyTorch fp32 on built-in sentences (below {INT8_MIN_COSINE}); use backend "
                f"{runtime_of(backend)!r} or openvino-int8"
            )
    return target


def load_runtime(encoder, model_path: str, backend: str | None):
    """``(backend, body or None)`` for ``encoder`` loaded from ``model_path``: the folder's own graph when it
    holds ``backend``'s (None: whichever it holds, else torch), otherwise one built into the cache."""
    found = exported_backends(model_path) if Path(model_path).is_dir() else []
    backend = check_backend(backend) if backend else (found[0] if found else "torch")
    if backend == "torch":
        return backend, None
    if encoder.pooling == "tokenprepend":
        raise UserError("tokenprepend pooling rewrites states inside the model: use the torch backend")
    folder = model_path if backend in found else cached_graph(encoder, model_path, backend)
    return backend, load_body(folder, backend)
