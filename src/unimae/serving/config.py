"""``ServerConfig``: every setting of one server, each field documented (the CLI's ``--help`` reads them)."""

from __future__ import annotations

from dataclasses import dataclass

from unimae.errors import UserError


@dataclass
class ServerConfig:
    """Settings of one OpenAI-compatible server (see docs/serving.md and docs/security.md)."""

    served_model_name: str
    """The name clients send as ``model`` (and ``/v1/models`` lists)."""
    api_key: str | None = None
    """If set, every route but ``/health`` needs ``Authorization: Bearer <api_key>``."""
    allowed_hosts: list[str] | None = None
    """Host names (any port) the ``Host`` header may name, else 400; ``*`` allows any. None: any, except
    that ``serve`` on a loopback address allows only localhost, 127.0.0.1 and [::1] (DNS rebinding)."""
    max_batch_size: int = 32
    """Texts per embedding forward pass (1: one request at a time)."""
    batch_timeout_ms: float = 5.0
    """How long a lone embedding request waits for others to share its pass."""
    batch_max_tokens: int | None = 256
    """A collected batch is embedded in length-sorted passes of at most this many padded tokens (texts x
    longest): one mix of short and long requests then wastes little compute on padding (None: one pass of
    up to ``max_batch_size`` texts). 256 was the fastest of 48-768 on this project's 2-core CPU
    (``benchmarks/batch_tokens.py``, docs/backends.md)."""
    max_inputs: int = 2048
    """Most texts in one embeddings request."""
    truncate: bool = True
    """Cut texts over ``max_length`` tokens (EOS kept), else reject them with 400."""
    normalize: bool = True
    """Return unit-length embeddings (OpenAI does)."""
    max_body_bytes: int = 8 * 2**20
    """Larger request bodies get 413."""
    default_max_tokens: int = 256
    """Chat and RAG answer length when a request gives none (completions: 16, as OpenAI)."""
    max_tokens_limit: int = 4096
    """Most tokens one request may ask to generate; a larger ``max_tokens`` gets 400 (not clamped: the
    client learns the limit)."""
    max_generation_seconds: float = 120.0
    """Wall-clock limit of one generation; it then ends with ``finish_reason`` "length"."""
    ui: bool = True
    """Serve the browser page (chat, compare, search) at ``GET /``; ``--no-ui``: the JSON routes only."""

    def __post_init__(self):
        if not self.served_model_name:
            raise UserError("served_model_name must not be empty")
        for name in (
            "max_batch_size",
            "max_inputs",
            "max_body_bytes",
            "default_max_tokens",
            "max_tokens_limit",
        ):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_max_tokens is not None and self.batch_max_tokens < 1:
            raise UserError(f"batch_max_tokens must be >= 1, got {self.batch_max_tokens}")
        if self.batch_timeout_ms < 0:
            raise UserError("batch_timeout_ms must be >= 0")
        if not self.max_generation_seconds > 0:
            raise UserError(f"max_generation_seconds must be > 0, got {self.max_generation_seconds}")
        if self.default_max_tokens > self.max_tokens_limit:
            raise UserError(
                f"default_max_tokens ({self.default_max_tokens}) is over max_tokens_limit ({self.max_tokens_limit})"
            )
        if self.api_key is not None:
            check_api_key(self.api_key)
        if self.allowed_hosts is not None:
            self.allowed_hosts = [h for h in self.allowed_hosts if h]
            if not self.allowed_hosts:
                raise UserError("allowed_hosts is empty: give host names, or '*' for any")


def check_api_key(key: str) -> None:
    """UserError for a key no standard client can send: spaces at either end (HTTP drops them from a
    header) or characters that are not printable ASCII (clients send header values as ASCII)."""
    if key != key.strip():
        raise UserError("the API key starts or ends with spaces, which no client can send: remove them")
    bad = next((c for c in key if not " " <= c <= "~"), None)
    if bad is not None:
        raise UserError(
            f"the API key holds {bad!r} (U+{ord(bad):04X}); use printable ASCII only, which every client "
            "can send in an Authorization header"
        )
