"""Small file helpers used everywhere: atomic writes, atomic folder swaps, sha256, JSON lines.

Every write that a crash must not leave half-done goes through here, so there is one recipe for it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from unimae.errors import UserError


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder, fsync, and os.replace."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Atomically write UTF-8 text (see :func:`atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, payload: Any, indent: int | None = 2) -> Path:
    """Atomically write ``payload`` as JSON (UTF-8, non-ASCII kept, trailing newline)."""
    return atomic_write_text(path, json.dumps(payload, indent=indent, ensure_ascii=False) + "\n")


def _renameat2_exchange(a: Path, b: Path) -> bool:
    """Atomically exchange two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    fn = getattr(libc, "renameat2", None)
    if fn is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    ok = fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0
    return ok


def replace_dir(src: str | Path, dst: str | Path) -> Path:
    """Move folder ``src`` to ``dst``, replacing any existing ``dst`` with no moment where it is missing.

    On Linux the two folders are exchanged atomically (renameat2 RENAME_EXCHANGE) and the old one is
    deleted afterwards. Elsewhere the old folder is first renamed aside (``dst`` then briefly does not
    exist; readers that care also look for ``<dst>.old``).
    """
    src, dst = Path(src), Path(dst)
    if not dst.exists():
        os.replace(src, dst)
        return dst
    if _renameat2_exchange(src, dst):
        shutil.rmtree(src, ignore_errors=True)  # src now holds the old contents
        return dst
    old = dst.with_name(dst.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(dst, old)
    os.replace(src, dst)
    shutil.rmtree(old, ignore_errors=True)
    return dst


@contextmanager
def atomic_dir(dst: str | Path) -> Iterator[Path]:
    """Build a folder in a temporary sibling and swap it in for ``dst`` only if the block succeeds.

    with atomic_dir("runs/x/model") as tmp:
        model.save_pretrained(tmp)
    """
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent))
    try:
        yield tmp
        fsync_tree(tmp)
        replace_dir(tmp, dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def fsync_tree(path: str | Path) -> None:
    """fsync every file under ``path`` (so a swapped-in folder survives a power cut)."""
    for f in Path(path).rglob("*"):
        if f.is_file() and not f.is_symlink():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


class JsonlError(UserError):
    """A JSON-lines file has a line that is not a JSON object; the message names file and line."""


def iter_jsonl(path: str | Path, skip_blank: bool = True) -> Iterator[tuple[int, Any]]:
    """``(line_number, record)`` for each line of a JSON-lines file (1-based numbers).

    Blank lines are skipped when ``skip_blank`` (else they raise); a line that is not valid JSON raises
    :class:`JsonlError` naming the file and line.
    """
    path = Path(path)
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                if skip_blank:
                    continue
                raise JsonlError(f"{path}:{number}: blank line")
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as e:
                raise JsonlError(f"{path}:{number}: not valid JSON ({e.msg})") from None


def read_jsonl(path: str | Path) -> list[Any]:
    """All records of a JSON-lines file (blank lines skipped)."""
    return [record for _, record in iter_jsonl(path)]


def append_jsonl(path: str | Path, record: Any) -> None:
    """Append one record as a JSON line (flushed; a crash loses at most this line)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, ensure_ascii=False) + "\n")
        f.flush()
