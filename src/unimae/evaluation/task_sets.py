"""The named task sets of ``unimae eval --benchmark NAME``: one registry, each set an ``mteb.Benchmark``.

=================== =====================================================================================
name                tasks
=================== =====================================================================================
offline             the ten local tasks (registry packages, ``offline_tasks.py``) that chose the defaults
offline-dev, -test  the dev and test parts of the widened offline set (docs/evaluation.md)
offline-v2          the second offline set, every category in both parts (``offline_v2.py``)
offline-v2-dev/test its dev and test parts
mteb-15             LLM2Vec's 15-task subset of MTEB (METHOD.md); data from the Hugging Face hub
mteb-eng            the 56 English MTEB v1 datasets; data from the Hugging Face hub
=================== =====================================================================================

``get_benchmark(name)`` builds the set afresh (new task objects, no data loaded): the hub sets take their
tasks from ``mteb.get_benchmark``, which needs no download; the data loads when a task runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

import mteb

from unimae.errors import UserError
from unimae.evaluation.offline_tasks import CATEGORIES, SIZES, offline_tasks

MTEB_ENG = "MTEB(eng, v1)"
MTEB_15 = (
    "SciFact",
    "ArguAna",
    "NFCorpus",
    "StackOverflowDupQuestions",
    "SciDocsRR",
    "BiorxivClusteringS2S",
    "MedrxivClusteringS2S",
    "TwentyNewsgroupsClustering",
    "SprintDuplicateQuestions",
    "Banking77Classification",
    "EmotionClassification",
    "MassiveIntentClassification",
    "STS17",
    "SICK-R",
    "STSBenchmark",
)


@dataclass
class TaskSet(mteb.Benchmark):
    """A named task set: an ``mteb.Benchmark`` (name, tasks, description) with what an evaluation's
    summary needs to know of it."""

    needs_hub: bool = False
    """Its data comes from the Hugging Face hub (checked before the model loads)."""
    sizes: Mapping[str, str] = field(default_factory=dict)
    """How each task's data is drawn, by task name ('mteb default' for a task not named)."""
    all_categories: tuple[str, ...] = ()
    """Categories a summary of the whole set lists even without a task (with a note instead of a score);
    empty: the categories its tasks have."""


def _offline(name: str, split: str | None) -> TaskSet:
    whole = split is None  # the first offline set: its six categories always listed
    return TaskSet(
        name=name,
        tasks=offline_tasks(split=split),
        description="the offline set" + ("" if whole else f", {split} part of the widened set"),
        sizes=SIZES,
        all_categories=CATEGORIES if whole else (),
    )


def _offline_v2(name: str, split: str | None) -> TaskSet:
    from unimae.evaluation.offline_v2 import V2_SIZES, offline_v2_tasks

    part = f"its {split} part" if split else "both parts"
    return TaskSet(
        name=name, tasks=offline_v2_tasks(split=split), description=f"offline-v2, {part}", sizes=V2_SIZES
    )


def _hub(name: str, wanted: Sequence[str] | None, description: str) -> TaskSet:
    """A subset of ``MTEB_ENG`` (English subsets already selected), or all of it (``wanted`` None)."""
    english = mteb.get_benchmark(MTEB_ENG)
    by_name = {t.metadata.name: t for t in english.tasks}
    missing = [n for n in wanted or () if n not in by_name]
    if missing:
        raise ValueError(f"{missing} not found in mteb's {MTEB_ENG}")
    tasks = [by_name[n] for n in wanted] if wanted else list(english.tasks)
    return TaskSet(
        name=name, tasks=tasks, description=description, reference=english.reference, needs_hub=True
    )


BENCHMARKS: dict[str, Callable[[], TaskSet]] = {
    "offline": partial(_offline, "offline", None),
    "offline-dev": partial(_offline, "offline-dev", "dev"),
    "offline-test": partial(_offline, "offline-test", "test"),
    "offline-v2": partial(_offline_v2, "offline-v2", None),
    "offline-v2-dev": partial(_offline_v2, "offline-v2-dev", "dev"),
    "offline-v2-test": partial(_offline_v2, "offline-v2-test", "test"),
    "mteb-15": partial(_hub, "mteb-15", MTEB_15, "LLM2Vec's 15-task subset of MTEB"),
    "mteb-eng": partial(_hub, "mteb-eng", None, f"mteb's {MTEB_ENG}: the 56 English MTEB v1 datasets"),
}


def get_benchmark(name: str) -> TaskSet:
    """The named set, built now (UserError for a name not in ``BENCHMARKS``)."""
    if name not in BENCHMARKS:
        raise UserError(f"unknown benchmark {name!r}; choose one of {tuple(BENCHMARKS)}")
    return BENCHMARKS[name]()


def select_tasks(benchmark: mteb.Benchmark, names: Sequence[str] | None = None) -> list:
    """The tasks of ``benchmark`` named in ``names``, in that order (all of them when None or empty);
    UserError for a name the set does not have."""
    by_name = {t.metadata.name: t for t in benchmark.tasks}
    if not names:
        return list(by_name.values())
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise UserError(f"unknown {benchmark.name} task(s) {unknown}; its tasks: {list(by_name)}")
    return [by_name[n] for n in names]


def benchmark_tasks(name: str, names: Sequence[str] | None = None) -> list:
    """mteb task objects of the named set (optionally only the named tasks)."""
    return select_tasks(get_benchmark(name), names)
