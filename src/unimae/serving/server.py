"""``serve``: load a model (and an index) and run the OpenAI-compatible app under uvicorn."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from unimae.encoding.encoder import Encoder
from unimae.serving.app import ServerConfig, create_app

API_KEY_ENV = "UNIMAE_API_KEY"
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


def serve(
    model: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    served_model_name: str | None = None,
    api_key: str | None = None,
    index_dir: str | None = None,
    device: str | None = None,
    max_length: int | None = None,
    log_level: str = "info",
    **config,
) -> None:
    """Serve ``model`` until interrupted. ``config``: further ``ServerConfig`` fields.

    ``api_key`` defaults to the ``UNIMAE_API_KEY`` environment variable.
    """
    import uvicorn

    cfg = ServerConfig(
        served_model_name=served_model_name or default_model_name(model),
        api_key=api_key or os.environ.get(API_KEY_ENV) or None,
        **config,
    )
    encoder = Encoder.from_pretrained(model, device=device, max_length=max_length)
    rag_index = None
    if index_dir is not None:
        from unimae.serving.rag import RagIndex

        rag_index = RagIndex.open(index_dir)
        rag_index.check_model(encoder)
    app = create_app(encoder, cfg, rag_index=rag_index)
    log.warning(
        "serving %s as '%s' on http://%s:%d/v1 (%d-d embeddings, %s)",
        model,
        cfg.served_model_name,
        host,
        port,
        encoder.dim,
        "API key required" if cfg.api_key else "no API key",
    )
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5)
