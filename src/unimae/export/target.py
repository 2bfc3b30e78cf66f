"""Where an export may write, checked before anything is loaded.

An export builds its folder beside the target and swaps it in whole, so whatever was in the target is
gone afterwards. The target may therefore be a new or empty folder, or a previous export of the same
format (``unimae export RUN`` refreshes ``RUN/model``); any other non-empty folder needs
``overwrite=True`` (``--overwrite``). A training run folder, a folder holding one, the source itself, the
current folder and the home folder are never replaced, whatever ``overwrite`` says.
"""

from __future__ import annotations

from pathlib import Path

from unimae.errors import UserError
from unimae.io import check_writable
from unimae.spec import SPEC_FILE

RUN_MARKS = ("checkpoint", "checkpoint.old", "checkpoint.tmp", "metrics.jsonl")


class ExportTargetError(UserError):
    """The export's target folder holds something an export must not replace; the message says what."""


def export_kind(folder: str | Path) -> str | None:
    """The format of a previous ``unimae export`` in ``folder`` (``causal-lm``, ``sentence-transformers``,
    ``onnx``, ...), or None when it is not one."""
    from unimae.encoding.backends import exported_backends

    folder = Path(folder)
    try:
        found = exported_backends(folder)
    except (ValueError, KeyError, TypeError, OSError):  # a damaged record: not an export to trust
        found = []
    if found:
        return found[0]
    if (folder / "modules.json").is_file():
        return "sentence-transformers"
    if (folder / "config.json").is_file() and (folder / SPEC_FILE).is_file():
        return "causal-lm"
    return None


def is_run_folder(folder: str | Path) -> bool:
    """Whether ``folder`` is a training run: its ``config.yaml`` with a checkpoint or metrics beside it."""
    folder = Path(folder)
    return (folder / "config.yaml").is_file() and any((folder / m).exists() for m in RUN_MARKS)


def _never_replaced(source: str | Path, target: Path) -> str | None:
    """Why ``target`` must never be replaced by an export (None: it may be, if the format allows)."""
    if is_run_folder(target):
        return "it is a training run folder (config.yaml, checkpoint, metrics)"
    resolved = target.resolve()
    src = Path(source)
    if src.exists() and src.resolve().is_relative_to(resolved):
        return f"it holds the source {source}"
    for place, what in ((Path.cwd(), "the current folder"), (Path.home(), "your home folder")):
        if place.resolve().is_relative_to(resolved):
            return f"it is or holds {what}"
    runs = [child.name for child in sorted(target.iterdir()) if child.is_dir() and is_run_folder(child)]
    if runs:
        return f"it holds the training run {runs[0]}"
    return None


def check_export_target(source: str | Path, output: str | Path, format: str, overwrite: bool = False) -> Path:
    """``output`` if an export in ``format`` may be written there; ``ExportTargetError`` (or ``DiskError``
    for a file or a folder that cannot be written) saying why not and what to do."""
    output = Path(output)
    check_writable(output, folder=True)
    if not output.is_dir() or not any(output.iterdir()):
        return output
    why = _never_replaced(source, output)
    if why is not None:
        raise ExportTargetError(
            f"refusing to export into {output}: {why}, and an export replaces the whole folder; "
            "give a new or empty folder with -o/--output"
        )
    kind = export_kind(output)
    if kind == format or overwrite:
        return output
    what = f"holds a {kind} export, not a {format} one" if kind else "is not empty and holds no unimae export"
    raise ExportTargetError(
        f"{output} {what} (an export replaces the whole folder): give a new or empty folder with "
        "-o/--output, or pass --overwrite to replace it"
    )
