"""Building and opening an index: one writer at a time (``writer_lock``), and an index always opened with
the encoder that built it (``open_index``, used by ``unimae rag`` and ``unimae serve --index``)."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from unimae import io as fileio
from unimae.encoding.encoder import Encoder
from unimae.errors import UserError
from unimae.rag.chunking import chunk_text
from unimae.rag.index import IndexUpdate, RagIndex
from unimae.rag.manifest import MANIFEST, RagIndexError

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"  # held by a writer for a whole update (hidden: never indexed itself)


def build_index(
    encoder: Encoder,
    docs: Sequence[str | Path],
    index_dir: str | Path,
    model_name: str | None = None,
    chunk_words: int | None = None,
    overlap: int | None = None,
    batch_size: int = 32,
    prune: bool = False,
    show_progress_bar: bool | None = None,
    follow_symlinks: bool = False,
    rebuild: bool = False,
) -> tuple[RagIndex, IndexUpdate]:
    """Create the index at ``index_dir`` or update it with ``docs`` (files or folders).

    The index folder is locked for the whole update (``writer_lock``): a second writer waits, then
    updates what the first one saved. Readers (``RagIndex.open``, a server) are not blocked.

    Args:
        follow_symlinks: also index what symlinks in a folder point to outside it (skipped by default).
        rebuild: start a new index (also over a damaged one) instead of updating the existing one.
    """
    check_build_options(index_dir, batch_size, chunk_words, overlap)
    with writer_lock(index_dir):
        index = RagIndex.open_or_create(
            index_dir,
            encoder,
            model_name or "unknown",
            rebuild=rebuild,
            chunk_words=chunk_words,
            overlap=overlap,
        )
        return index, index.add_documents(
            encoder,
            docs,
            batch_size=batch_size,
            prune=prune,
            show_progress_bar=show_progress_bar,
            follow_symlinks=follow_symlinks,
        )


def check_build_options(
    index_dir: str | Path, batch_size: int, chunk_words: int | None = None, overlap: int | None = None
) -> None:
    """Before any work (the CLI calls it before loading the model): ``batch_size >= 1``, a valid chunking,
    and an index folder that can be written (``DiskError`` for a file there, a read-only disk)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UserError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
    if (chunk_words is not None and chunk_words < 1) or (overlap is not None and overlap < 0):
        raise UserError(f"need chunk_words >= 1 and overlap >= 0, got {chunk_words}, {overlap}")
    if chunk_words is not None and overlap is not None:
        chunk_text("x", chunk_words, overlap)  # overlap < chunk_words
    fileio.check_writable(index_dir, folder=True)


@contextmanager
def writer_lock(index_dir: str | Path, timeout: float | None = None) -> Iterator[None]:
    """Hold ``index_dir/.lock`` (created with the folder) while the block runs; one writer at a time.

    Another process's lock is waited for (a warning says so once), at most ``timeout`` seconds (None: as
    long as it takes; the lock goes with its process, so a killed writer never leaves it held); then
    ``RagIndexError``. A folder that cannot be written is a one-line ``DiskError`` before any work.
    """
    from filelock import FileLock, Timeout

    index_dir = Path(index_dir)
    fileio.check_writable(index_dir, folder=True)
    index_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(index_dir / LOCK_FILE)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.warning("another `unimae rag index` is updating %s: waiting for it to finish", index_dir)
        try:
            lock.acquire(timeout=-1 if timeout is None else timeout)
        except Timeout:
            raise RagIndexError(
                f"{index_dir} is still being updated by another `unimae rag index` after {timeout} s; "
                "try again when it has finished"
            ) from None
    try:
        yield
    finally:
        lock.release()


def open_index(
    index_dir: str | Path,
    model: str | None = None,
    device: str | None = None,
    backend: str | None = None,
    rebuild: bool = False,
    must_exist: bool = True,
    max_length: int | None = None,
) -> tuple[Encoder, RagIndex | None, str]:
    """``(encoder, index, model)``: the index in ``index_dir`` and the encoder that built it.

    The model and backend default to those the index records; a model that is a path is recorded
    absolute (so the index works from any folder). The encoder is checked against the index
    (``RagIndex.check_model``: the same embeddings, else ``UserError``).

    Args:
        rebuild: the index is about to be rebuilt: a damaged one is not an error (index None), and the
            encoder is not checked against it.
        must_exist: ``RagIndexError`` when there is no index; if False (``rag index``), a folder without
            one gives index None, and ``model`` is then needed.
        max_length: tokens per embedded text incl. EOS (``Encoder.from_pretrained``'s default if None).
    """
    index = None
    if must_exist or (Path(index_dir) / MANIFEST).exists():
        try:
            index = RagIndex.open(index_dir)
        except UserError:
            if not rebuild:  # a damaged index is only read when asked to rebuild it
                raise
    model = model or (index.model_name if index is not None else None)
    if model is None:
        raise UserError(f"give --model: there is no readable index at {index_dir} to take it from")
    if Path(model).exists():
        model = str(Path(model).resolve())
    backend = backend or (index.manifest.backend if index is not None else None)
    encoder = Encoder.from_pretrained(model, device=device, backend=backend, max_length=max_length)
    if index is not None and not rebuild:
        index.check_model(encoder)
    return encoder, index, model
