"""The ``unimae`` subcommands: ``COMMANDS`` (name -> one-line help and the function that declares it, or a
group of them), each declared from the library function or config it calls, with its examples and the few
lines that print what it did. Each declaration imports its library only when called."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Literal

import pydantic
from jsonargparse import (
    ActionConfigFile,
    Namespace,
)
from jsonargparse.typing import PositiveInt

from unimae.cli.options import (
    BACKEND_HELP,
    Command,
    add_options,
    command_line,
    default_of,
    device_option,
    make_parser,
    plain,
    pooling_option,
    threads_option,
)
from unimae.errors import UserError

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

    cmd = Command(make_parser(help, EXAMPLES_TRAIN), _train, overrides="--", renames=LEGACY)
    cmd.parser.add_argument("--config", action=ActionConfigFile, help="YAML file of TrainConfig fields")
    add_options(cmd, TrainConfig)
    add_options(cmd, train_and_export, skip={"cfg"})
    cmd.option("demo", bool, "after training, run `unimae demo`", default=False)
    return cmd


EXAMPLES_ENCODE = """examples:
  unimae encode runs/mine "first text" "second text" -o vecs.npy
  unimae encode runs/mine -i texts.txt -o vecs.npy          # one text per line; or .jsonl (--text-field)
  unimae encode smollm2-135m -i texts.jsonl --pooling mean --batch-size 8"""


def _encode(ns: Namespace) -> None:
    from unimae.encoding.encoder import Encoder
    from unimae.encoding.files import EncodedFile, check_encode_options, encode_to_file, read_inputs

    texts = list(ns.texts or [])
    if ns.input:
        texts += read_inputs(ns.input, ns.text_field)
    if not texts:
        raise UserError("nothing to encode: give texts as arguments or --input FILE (.txt, .jsonl, ...)")
    args = plain(ns)
    loading = {k: args.pop(k) for k in ENCODER_OPTIONS}
    for k in ("texts", "input", "text_field"):
        args.pop(k)
    check_encode_options(args["output"], args["batch_size"], args["truncate_dim"])  # before loading
    encoder = Encoder.from_pretrained(**loading)
    out = encode_to_file(encoder, texts, **args)
    print(EncodedFile(out, len(texts), args["truncate_dim"] or encoder.dim, encoder.pooling))


ENCODER_OPTIONS = ("name_or_path", "pooling", "dtype", "device", "max_length", "prompt", "backend")


def _encoder_options(cmd: Command) -> None:
    """The model and how to load it: ``Encoder.from_pretrained``'s parameters."""
    from unimae.encoding.encoder import Encoder

    add_options(cmd, Encoder.from_pretrained, skip={"cls", "pooling", "device", "kwargs"})
    pooling_option(cmd)
    device_option(cmd)


def encode_command(help: str) -> Command:
    from unimae.encoding.files import encode_to_file, read_inputs

    cmd = Command(make_parser(help, EXAMPLES_ENCODE), _encode)
    _encoder_options(cmd)
    threads_option(cmd)
    add_options(cmd, encode_to_file, skip={"encoder", "texts"}, positional=False)
    cmd.parser.add_argument("texts", nargs="*", help="texts to embed (or use --input)")
    cmd.option("input", str | None, ".txt (one text per line), .jsonl, ... file")
    text_field = default_of(read_inputs, "text_field")
    cmd.option("text_field", None, "field holding the text in .jsonl records", default=text_field)
    return cmd


EXAMPLES_EXPORT = """examples:
  unimae export runs/mine -o exported/mine         # plain causal-LM folder from the run's last checkpoint
  unimae export runs/default/model --format sentence-transformers -o exported/st   # SentenceTransformer(folder)
  unimae export runs/default/model --format onnx-int8 -o exported/int8   # fast CPU embeddings (docs/backends.md)
the target must be new, empty or an earlier export of the same format (--overwrite: any other folder but a run)"""


def _export(ns: Namespace) -> None:
    from unimae.export import ExportResult, export

    out = export(ns.source, ns.output, format=ns.format, overwrite=ns.overwrite, min_cosine=ns.min_cosine)
    print(ExportResult(ns.source, out, ns.format))


def export_command(help: str) -> Command:
    from unimae.export import export

    cmd = Command(make_parser(help, EXAMPLES_EXPORT), _export)
    add_options(cmd, export)
    return cmd


def demo_command(help: str) -> Command:
    from unimae.demo import run_demo

    examples = "examples:\n  unimae demo runs/default/model\n  unimae demo smollm2-135m --pooling mean"
    cmd = Command(
        make_parser(help, examples),
        lambda ns: run_demo(ns.model, pooling=ns.pooling),
    )
    cmd.parser.add_argument(
        "model", nargs="?", default=default_of(run_demo, "model"), help="model folder, run folder, alias, ..."
    )
    pooling_option(cmd)
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


def _run_evaluation(name: str, run, ns: Namespace) -> None:
    """Run an evaluation function with the parsed options, print its table and where it wrote."""
    args = {k: v for k, v in ns.as_dict().items() if k not in ("threads", "__path__")}
    result = run(**args, command=command_line(name, ns, ["model"]))
    print(result)
    print(result.run_line())


def _eval(ns: Namespace) -> None:
    from unimae.evaluation.benchmark import evaluate_model

    _run_evaluation("eval", evaluate_model, ns)


def eval_command(help: str) -> Command:
    from unimae.evaluation.benchmark import evaluate_model

    cmd = Command(make_parser(help, EXAMPLES_EVAL), _eval)
    add_options(cmd, evaluate_model, skip={"command", "progress", "pooling"})
    pooling_option(cmd)
    threads_option(cmd)
    return cmd


EXAMPLES_LM_EVAL = """examples:
  unimae lm-eval runs/default/model --label UniMAE -o results/unimae/lm-eval
  unimae lm-eval smollm2-135m --label Base -o results/base/lm-eval
  unimae lm-eval MODEL --n-sentences 100 --n-examples 50 --tasks social_iqa strategyqa   # quicker"""


def _lm_eval(ns: Namespace) -> None:
    from unimae.evaluation.lm_eval import run_lm_eval

    _run_evaluation("lm-eval", run_lm_eval, ns)


def lm_eval_command(help: str) -> Command:
    from unimae.evaluation.lm_eval import run_lm_eval

    cmd = Command(make_parser(help, EXAMPLES_LM_EVAL), _lm_eval)
    add_options(cmd, run_lm_eval, skip={"command", "prompts"})
    threads_option(cmd)
    return cmd


def _data_prepare(ns: Namespace) -> None:
    from unimae.data.prepare import manifest_table, prepare_data

    print(manifest_table() if ns.list else prepare_data(archives=ns.archives))


def data_prepare_command(help: str) -> Command:
    from unimae.data.prepare import prepare_data

    examples = """examples:
  unimae data prepare                 # once: fetch the pinned offline evaluation data (sha256-checked)
  unimae data prepare --list          # the manifest: packages, files, sha256
  unimae data prepare --archives.bigbench bigbench-1.0.0.tar.gz   # an archive already downloaded
  unimae data prepare --archives.bigbench ~/src/BIG-bench         # or a folder holding its files"""
    cmd = Command(make_parser(help, examples), _data_prepare)
    add_options(cmd, prepare_data, skip={"progress"})
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
    cmd = Command(make_parser(help, examples), _report)
    add_options(cmd, write_report, skip={"results"})
    cmd.parser.add_argument(
        "results", nargs="?", default=default_of(write_report, "results"), help="folder searched for results"
    )
    return cmd


def _compare(ns: Namespace) -> None:
    from unimae.evaluation.compare import compare_summaries, load_summary
    from unimae.io import atomic_write_json

    comparison = compare_summaries(load_summary(ns.a), load_summary(ns.b), ns.tasks)
    print(comparison)
    if ns.json:
        print(f"wrote {atomic_write_json(ns.json, comparison.to_dict())}")


def compare_command(help: str) -> Command:
    examples = """examples:
  unimae compare results/unimae/offline-v2-test results/mntp/offline-v2-test
  unimae compare A B --json results/compare/unimae-vs-mntp.json
  unimae compare A B --tasks LeeSTS RottenTomatoesClassification-test   # only these (A ran part of the set)
the difference is A - B; its 95% interval comes from the replicate scores both summary.json files keep"""
    cmd = Command(make_parser(help, examples), _compare)
    cmd.parser.add_argument("a", help="result folder (or summary.json) A")
    cmd.parser.add_argument("b", help="result folder (or summary.json) B, on the same tasks")
    cmd.option("json", str | None, "also write the comparison here")
    cmd.option("tasks", list[str] | None, "compare on these tasks only (each in both results)")
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
    cmd = Command(make_parser(help, examples), _tsne)
    add_options(cmd, tsne_figure, skip={"models"}, positional=False)
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

    cmd = Command(make_parser(help, EXAMPLES_SERVE), lambda ns: serve(**plain(ns)))
    add_options(cmd, serve)
    named = set(inspect.signature(serve).parameters)
    add_options(cmd, ServerConfig, skip=named)
    threads_option(cmd)
    return cmd


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
    args = {k: v for k, v in plain(ns).items() if k not in ("model", "device", "backend")}
    _, update = build_index(encoder, model_name=model, show_progress_bar=True, **args)
    print(update)


def _rag_ask(ns: Namespace) -> None:
    from unimae.rag import ask

    encoder, index, _ = _open(ns, must_exist=True)
    args = {k: v for k, v in plain(ns).items() if k not in ("model", "device", "index_dir", "backend")}
    print(ask(encoder, index, **args))


def _rag_search(ns: Namespace) -> None:
    encoder, index, _ = _open(ns, must_exist=True)
    hits = index.search(encoder, ns.query, ns.k)
    if hits:  # none from an empty index: print nothing
        print(hits)


def _rag_common(cmd: Command, k_of: Callable | None = None) -> None:
    """--model, --device, the index folder of ask/search and their positive -k (the library's default)."""
    from unimae.encoding.backends import BACKENDS

    cmd.option("model", str | None, "model to embed with (default: the one that built the index)")
    device_option(cmd)
    backends = Literal[BACKENDS] | None
    cmd.option("backend", backends, BACKEND_HELP + " (ask/search: default the index's)")
    if k_of is not None:
        cmd.option("index_dir", None, "index folder (`unimae rag index`)", required=True)
        k = default_of(k_of, "k")
        cmd.option("k", PositiveInt, "chunks to retrieve", check=pydantic.PositiveInt, default=k)
    threads_option(cmd)


def rag_index_command(help: str) -> Command:
    from unimae.rag import build_index

    cmd = Command(make_parser(help, EXAMPLES_RAG), _rag_index)
    add_options(
        cmd, build_index, skip={"encoder", "docs", "model_name", "show_progress_bar"}, positional=False
    )
    cmd.parser.add_argument("docs", nargs="+", help="files or folders")
    _rag_common(cmd)
    return cmd


def rag_ask_command(help: str) -> Command:
    from unimae.rag import ask

    cmd = Command(make_parser(help, EXAMPLES_RAG), _rag_ask)
    add_options(cmd, ask, skip={"encoder", "index", "k"})
    _rag_common(cmd, ask)
    return cmd


def rag_search_command(help: str) -> Command:
    from unimae.rag import RagIndex

    cmd = Command(make_parser(help, EXAMPLES_RAG), _rag_search)
    add_options(cmd, RagIndex.search, skip={"self", "encoder", "k"})
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
