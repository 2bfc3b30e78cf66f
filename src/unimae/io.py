"""Small file helpers used everywhere: atomic writes, atomic folder swaps, sha256, JSON lines.

Every write that a crash must not leave half-done goes through here, so there is one recipe for it.
Temporary files and folders are hidden siblings of their target named with the writing process's id
(``.NAME.PID.RANDOM.tmp``): a later write to the same target removes those of processes that are gone
(a ``kill -9`` mid-write). What is written gets the permissions the umask allows, as ``open`` would give.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from unimae.errors import UserError


class DiskError(UserError):
    """A target cannot be written: it is a folder (or a file where a folder goes), read-only, or the disk is
    full. The message names the path and what the system said."""


# errors of writing that say something about the target or the disk, not about unimae
DISK_ERRNOS = frozenset(
    {
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EFBIG,
        errno.EISDIR,
        errno.ENOTDIR,
        errno.EEXIST,
        errno.ENAMETOOLONG,
        errno.ENOTEMPTY,
    }
)


@contextmanager
def disk_errors(what: str | Path, hint: str = "") -> Iterator[None]:
    """Turn an OSError of writing (``DISK_ERRNOS``: read-only, disk full, a folder where a file goes...)
    into a one-line :class:`DiskError` naming the file (or ``what``), then ``hint``; other errors pass
    unchanged (wrap writes only: a read's EACCES is not a write's)."""
    try:
        yield
    except OSError as e:
        if e.errno not in DISK_ERRNOS:
            raise
        where = e.filename if e.filename is not None else what
        raise DiskError(f"cannot write {where}: {e.strerror or e}{'; ' + hint if hint else ''}") from None


def file_kind(path: str | Path) -> str:
    """What ``path`` is (symlinks followed), in words: 'a file', 'a folder', 'a FIFO', 'a character
    device', 'a block device', 'a socket', 'a broken symlink' or 'missing'."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "a broken symlink" if path.is_symlink() else "missing"
    except OSError as e:
        return f"unreadable ({e.strerror})"
    kinds = [
        (stat.S_ISREG, "a file"),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ]
    return next((word for test, word in kinds if test(mode)), "not a regular file")


def require_regular_file(path: str | Path, error: type[UserError] = UserError) -> Path:
    """``path`` if it is a regular file (after symlinks); else ``error`` saying what it is instead (a file
    that does not exist, a folder, a FIFO or device, which reading would block on or never finish)."""
    path = Path(path)
    kind = file_kind(path)
    if kind == "a file":
        return path
    if kind == "missing":
        raise error(f"{path} does not exist")
    target = f" (-> {path.resolve()})" if path.is_symlink() else ""
    raise error(f"{path}{target} is {kind}, not a regular file")


def check_writable(target: str | Path, folder: bool = False) -> Path:
    """Before any work: :class:`DiskError` unless ``target`` (a file, or a folder when ``folder``) can be
    written where it is: not a folder where a file goes (or the reverse), not under a file, and the
    nearest existing folder accepts a new file (a read-only or full disk is found here, not after the work)."""
    target = Path(target)
    if target.exists():
        if folder and not target.is_dir():
            raise DiskError(f"{target} is {file_kind(target)}, not a folder")
        if not folder and target.is_dir():
            raise DiskError(f"{target} is a folder; give a file name")
    where = target if folder and target.is_dir() else target.parent
    while not where.exists() and not where.is_symlink() and where != where.parent:
        where = where.parent
    if not where.is_dir():
        raise DiskError(f"cannot write {target}: {where} is {file_kind(where)}, not a folder")
    with disk_errors(where):
        fd, probe = tempfile.mkstemp(dir=where, prefix=_temp_prefix(target), suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    return target


def current_umask() -> int:
    """The process's umask (read without changing it where /proc says it)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (not thread-safe, but only read here)
    os.umask(mask)
    return mask


def _temp_prefix(target: Path) -> str:
    return f".{target.name}.{os.getpid()}."


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's process (or a number no pid can be): leave its files alone
    return True


LEGACY_TEMP_AGE_S = 24 * 3600  # temporaries named without a pid (older versions): removed after a day


def remove_stale_temps(target: str | Path) -> list[Path]:
    """Remove the temporaries that writes to ``target`` left behind when their process was killed.

    Matches ``.NAME.PID.RANDOM.tmp`` (and ``.NAME.stage.PID.RANDOM.tmp``) beside ``target`` whose PID is
    no longer running, and pid-less ``.NAME.RANDOM.tmp`` of older versions a day old. Returns what it
    removed; a temporary that cannot be removed is left (no error).
    """
    target = Path(target)
    if not target.parent.is_dir():
        return []
    name = re.escape(target.name)
    with_pid = re.compile(rf"\.{name}\.(?:stage\.)?(\d+)\.[A-Za-z0-9_]+\.tmp")
    legacy = re.compile(rf"\.{name}\.(?:[A-Za-z0-9_]{{8}}\.tmp|stage\.[A-Za-z0-9_]{{8}})")
    removed = []
    for entry in os.scandir(target.parent):
        match = with_pid.fullmatch(entry.name)
        if match:
            stale = not _pid_alive(int(match.group(1)))
        else:
            stale = bool(legacy.fullmatch(entry.name)) and _older_than(entry, LEGACY_TEMP_AGE_S)
        if stale:
            _remove(Path(entry.path))
            removed.append(Path(entry.path))
    return removed


def _older_than(entry: os.DirEntry, seconds: float) -> bool:
    try:
        return time.time() - entry.stat(follow_symlinks=False).st_mtime > seconds
    except OSError:
        return False


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def temp_dir_beside(target: str | Path, tag: str = "") -> Path:
    """A new empty hidden folder beside ``target`` (``.NAME.[TAG.]PID.RANDOM.tmp``), with the permissions
    the umask allows; stale ones of killed processes are removed first."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target)
    prefix = f".{target.name}.{tag + '.' if tag else ''}{os.getpid()}."
    tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=target.parent))
    tmp.chmod(0o777 & ~current_umask())
    return tmp


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder, fsync, and os.replace.

    The file gets the permissions the umask allows (0644 under the usual 022), as ``open`` would give it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
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
    tmp = temp_dir_beside(dst)
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


def not_unicode(text: str) -> str | None:
    """Why ``text`` cannot be written as UTF-8 (None: it can): a lone surrogate, which JSON's ``\\ud800``
    escapes and command-line bytes that are not UTF-8 (Python keeps them as U+DC80..U+DCFF) both give."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        char = ord(text[e.start])
        if 0xDC80 <= char <= 0xDCFF:  # surrogateescape: the byte that was not UTF-8
            return f"byte 0x{char - 0xDC00:02x} at character {e.start} is not UTF-8"
        return f"a lone surrogate U+{char:04X} at character {e.start} is not valid Unicode"
    return None


def split_lines(text: str) -> list[str]:
    """``text``'s lines, whichever line endings it has (``\\n``, ``\\r\\n`` or an old Mac's ``\\r``), no final
    empty line. Only those split: form feeds, ``\\u2028`` and the like stay inside a line (unlike
    ``str.splitlines``), so one line of a file is one text."""
    lines = re.split(r"\r\n|\r|\n", text)
    if lines[-1] == "":
        lines.pop()
    return lines


class JsonlError(UserError):
    """A JSON-lines file has a line that is not a JSON object; the message names file and line."""


def iter_jsonl(path: str | Path, skip_blank: bool = True) -> Iterator[tuple[int, Any]]:
    """``(line_number, record)`` for each line of a JSON-lines file (1-based numbers).

    Blank lines are skipped when ``skip_blank`` (else they raise); a line that is not valid JSON raises
    :class:`JsonlError` naming the file and line. A UTF-8 byte-order mark at the start is accepted (editors
    on Windows write one), as are ``\\r\\n`` and ``\\r`` line endings.
    """
    path = Path(path)
    with open(path, encoding="utf-8-sig") as f:  # text mode: every line ending splits
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
