"""``serve``: load a model (and an index) and run the OpenAI-compatible app under uvicorn."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal

from unimae.encoding.encoder import Encoder
from unimae.errors import UserError
from unimae.rag import RagIndex, open_index
from unimae.serving.app import create_app
from unimae.serving.config import ServerConfig
from unimae.serving.middleware import LOOPBACK_HOSTS, is_loopback

API_KEY_ENV = "UNIMAE_API_KEY"
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")  # uvicorn's
LogLevel = Literal["critical", "error", "warning", "info", "debug", "trace"]
log = logging.getLogger(__name__)


def default_model_name(model: str) -> str:
    """The name a served model goes by: the folder name (its run's name for ``RUN/model``), or the id."""
    path = Path(model)
    if not path.exists():
        return model
    path = path.resolve()
    if path.suffix == ".gguf":
        return path.stem
    return path.parent.name if path.name == "model" else path.name


def check_listen_options(port: int, log_level: str) -> None:
    """UserError unless a server can listen on ``port`` (0..65535; 0: any free port) and uvicorn knows
    ``log_level``; checked before the model is loaded."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise UserError(f"port must be a whole number from 0 to 65535, got {port!r}")
    if log_level not in LOG_LEVELS:
        raise UserError(f"log_level {log_level!r} is not one of {', '.join(LOG_LEVELS)}")


def serve(
    model: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    served_model_name: str | None = None,
    api_key: str | None = None,
    index_dir: str | None = None,
    device: str | None = None,
    max_length: int | None = None,
    log_level: LogLevel = "info",
    allowed_hosts: list[str] | None = None,
    backend: str | None = None,
    **config,
) -> None:
    """Serve ``model`` until interrupted. ``config``: further ``ServerConfig`` fields.

    Args:
        model: model folder, run folder, .gguf file or 'smollm2-135m'.
        host: address to listen on; on a loopback address (the default) only Host headers naming
            localhost, 127.0.0.1 or [::1] are answered unless ``allowed_hosts`` says otherwise.
        port: port to listen on.
        served_model_name: name clients use as 'model' (default: from the path).
        api_key: require 'Authorization: Bearer KEY' (default: $UNIMAE_API_KEY, else none).
        index_dir: a `unimae rag index` folder: enables POST /v1/rag and /v1/rag/search.
        device: cpu, cuda, mps (default: best available).
        max_length: tokens per embedded text incl. EOS (default 512 or the context).
        log_level: uvicorn's log level.
        allowed_hosts: host names (any port) the Host header may name, '*' for any (default: the loopback
            names on a loopback address, else any).
        backend: what computes embeddings: torch, onnx, onnx-int8, openvino, openvino-int8 (default: the
            backend that built the index; without one, the graph an ONNX/OpenVINO export holds, else
            torch); generation always runs on torch.
    """
    import uvicorn

    check_listen_options(port, log_level)
    if allowed_hosts is None and is_loopback(host):  # DNS rebinding: see docs/security.md
        allowed_hosts = list(LOOPBACK_HOSTS)
    named = {
        "served_model_name": served_model_name or default_model_name(model),
        "allowed_hosts": allowed_hosts,
    }
    cfg = ServerConfig(api_key=api_key or os.environ.get(API_KEY_ENV) or None, **(named | config))
    encoder, rag_index = _load(model, index_dir, device, max_length, backend)
    app = create_app(encoder, cfg, rag_index=rag_index)
    if not cfg.api_key and not is_loopback(host):
        log.warning(
            "no API key on a non-loopback address: anyone who can reach %s:%d can use the model", host, port
        )
    log.warning("serving %s as %s", model, _where(cfg, encoder, host, port))
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5)


def _load(
    model: str, index_dir: str | None, device: str | None, max_length: int | None, backend: str | None
) -> tuple[Encoder, RagIndex | None]:
    """The encoder, and the index in ``index_dir`` opened with it (``unimae.rag.open_index``: checked to
    embed like the model that built it; the backend defaults to the index's) or None."""
    if index_dir is None:
        return Encoder.from_pretrained(model, device=device, max_length=max_length, backend=backend), None
    encoder, index, _ = open_index(index_dir, model, device, backend, max_length=max_length)
    return encoder, index


def _where(cfg: ServerConfig, encoder: Encoder, host: str, port: int) -> str:
    """What the start line says: the name and URL, the page's URL, the embeddings, whether a key is needed."""
    key = "API key required" if cfg.api_key else "no API key"
    page = f" (a page to try it: http://{host}:{port}/)" if cfg.ui else ""
    embeddings = f"{encoder.dim}-d embeddings on {encoder.backend}"
    return f"'{cfg.served_model_name}' on http://{host}:{port}/v1{page} ({embeddings}, {key})"
