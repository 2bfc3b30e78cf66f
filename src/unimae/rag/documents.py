"""Documents to index: finding .txt/.md/.jsonl files (never an index's own files) and reading them as text.

Hostile folders and documents: symlinks out of a folder are skipped unless ``follow_symlinks``; an index
folder inside a documents folder is never searched; a FIFO or device is not read; a file that is not
UTF-8 (or a bad JSONL line) is skipped with a reason instead of stopping the index.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from unimae import io as fileio
from unimae.errors import UserError
from unimae.rag.manifest import is_index_folder

SUFFIXES = (".txt", ".md", ".jsonl")


class DocumentError(UserError):
    """A document or folder cannot be indexed (missing, wrong kind, unreadable); the message names it."""


def collect_files(
    paths: Iterable[str | Path], follow_symlinks: bool = False, index_dir: str | Path | None = None
) -> tuple[list[Path], list[str]]:
    """The .txt/.md/.jsonl files named, or found (recursively, hidden ones skipped) in the folders named.

    In a folder, a symlink to a file or folder outside it is skipped unless ``follow_symlinks``: the
    second list says what was skipped and why. Files named explicitly are always taken, except those of
    ``index_dir`` (the index being updated, whose chunk files change with every save); a folder that
    holds an index (``index_dir`` or another) is never searched.
    """
    files: list[Path] = []
    skipped: list[str] = []
    own = Path(index_dir).resolve() if index_dir is not None else None
    for p in map(Path, paths):
        if own is not None and p.resolve().is_relative_to(own) and p.exists():
            skipped.append(f"{p}: part of the index {index_dir} being updated; not a document")
            continue
        if p.is_dir() and is_index_folder(p):
            skipped.append(f"{p}: holds a unimae index (its chunk files are not documents)")
            continue
        if p.is_dir():
            found, why = _walk(p, follow_symlinks)
            skipped += why
            if not found:
                raise DocumentError(
                    f"{p} holds no {'/'.join(SUFFIXES)} files to index" + "".join(f"; {w}" for w in why)
                )
            files += found
        else:
            fileio.require_regular_file(p, DocumentError)  # missing, a FIFO, a device: said as it is
            if p.suffix not in SUFFIXES:
                raise DocumentError(f"{p}: only {', '.join(SUFFIXES)} files can be indexed")
            files.append(p)
    return list(dict.fromkeys(f.resolve() for f in files)), skipped


def _walk(root: Path, follow_symlinks: bool) -> tuple[list[Path], list[str]]:
    """Indexable files under ``root``, and what was skipped (links out of ``root``, broken links)."""
    top = root.resolve()
    found, skipped, seen = [], [], set()
    hint = "pass follow_symlinks=True (--follow-symlinks) to index it"
    for dirpath, dirnames, filenames in os.walk(root, followlinks=follow_symlinks):
        here = Path(dirpath)
        seen.add(here.resolve())
        keep = []
        for name in sorted(n for n in dirnames if not n.startswith(".")):
            d = here / name
            if follow_symlinks and d.resolve() in seen:  # a link loop
                continue
            if is_index_folder(d):  # an index's own chunk files: indexing them doubles it every run
                continue
            if not follow_symlinks and d.is_symlink() and not d.resolve().is_relative_to(top):
                skipped.append(f"{d}: a symlink to a folder outside {root} ({d.resolve()}); {hint}")
            keep.append(name)
        dirnames[:] = keep
        for name in sorted(n for n in filenames if not n.startswith(".") and Path(n).suffix in SUFFIXES):
            f = here / name
            kind = fileio.file_kind(f)
            if kind != "a file":  # reading a FIFO or /dev/zero would block or never end
                skipped.append(
                    f"{f}: {kind}" if kind == "a broken symlink" else f"{f}: {kind}, not a regular file"
                )
            elif not follow_symlinks and not f.resolve().is_relative_to(top):
                skipped.append(f"{f}: a symlink to a file outside {root} ({f.resolve()}); {hint}")
            else:
                found.append(f)
    return found, skipped


def read_documents(path: Path, skipped: list[str] | None = None) -> list[tuple[str, str]]:
    """``(source, text)`` pairs of one file: the whole file for .txt/.md, one per record for .jsonl.

    A .jsonl record holds its text in ``text`` (or ``content``) and may name itself in ``source``, ``title``
    or ``id``; otherwise it is ``file.jsonl:LINE``. A file that is not UTF-8 raises UnicodeDecodeError, a bad
    record ``DocumentError`` (``unimae.io.JsonlError``), both naming the file. A record whose text or name
    is not valid Unicode (a JSON ``"\\ud800"`` escape) is left out, its ``file:line`` and why appended to
    ``skipped``: it could be neither embedded nor saved, and the file's other records are fine.
    """
    if path.suffix != ".jsonl":
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark is not text
        return [(path.name, text)] if text.strip() else []
    docs = []
    for n, rec in fileio.iter_jsonl(path):
        text = rec.get("text", rec.get("content")) if isinstance(rec, dict) else None
        if not isinstance(text, str):
            raise DocumentError(f"{path}:{n}: a record needs a 'text' string")
        name = next(
            (str(rec[k]) for k in ("source", "title", "id") if rec.get(k) is not None), f"{path.name}:{n}"
        )
        why = fileio.not_unicode(text) or fileio.not_unicode(name)
        if why is not None:
            field_name = "its text" if fileio.not_unicode(text) else "its source name"
            (skipped if skipped is not None else []).append(
                f"{path}:{n}: {field_name}: {why}; record skipped"
            )
            continue
        if text.strip():
            docs.append((name, text))
    return docs


def readable_documents(path: Path, skipped: list[str]) -> tuple[list[tuple[str, str]] | None, str | None]:
    """(documents, None), or (None, why) for a file one bad document should not stop an index for; records
    left out of a readable file are added to ``skipped``."""
    try:
        return read_documents(path, skipped), None
    except UnicodeDecodeError as e:
        return None, f"{path}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); skipped"
    except (DocumentError, fileio.JsonlError) as e:
        return None, f"{e}; skipped"
    except OSError as e:
        return None, f"{path}: cannot be read ({e.strerror}); skipped"
