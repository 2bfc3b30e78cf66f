"""The ``unimae`` command: subcommands mapped onto library functions, nothing else."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

EPILOG_TRAIN = """examples:
  unimae train                                    # default model, default corpus, configs' defaults
  unimae train --config configs/default.yaml steps=200 lr=5e-5
  unimae train model=path/to/hf_model data=my_texts.jsonl lora=true output_dir=runs/mine
  unimae train --resume --output-dir runs/mine    # continue a killed run from its last checkpoint
  accelerate launch --num_processes 2 -m unimae.cli train --config configs/default.yaml
fields: see src/unimae/training/config.py (every field documented) or configs/default.yaml"""


def _cmd_train(args) -> int:
    from unimae.training.config import load_config, parse_overrides
    from unimae.training.loop import train

    overrides = parse_overrides(args.overrides)
    if args.output_dir:
        overrides["output_dir"] = args.output_dir
    config = args.config
    if args.resume and config is None:
        run_dir = Path(overrides.get("output_dir", "runs/default"))
        config = run_dir / "config.yaml" if (run_dir / "config.yaml").exists() else None
    cfg = load_config(config, overrides)
    run_dir = train(cfg, resume=args.resume)
    if args.demo:
        from unimae.demo import run_demo

        run_demo(str(run_dir / "model"))
    return 0


def _read_texts(args) -> list[str]:
    texts = list(args.texts or [])
    if args.input:
        from unimae.data.corpus import load_texts

        texts += load_texts(args.input, text_field=args.text_field)
    if not texts:
        raise ValueError("nothing to encode: give texts as arguments or --input FILE (.txt or .jsonl)")
    return texts


def _cmd_encode(args) -> int:
    import numpy as np

    from unimae.encoding.encoder import Encoder

    texts = _read_texts(args)
    enc = Encoder.from_pretrained(
        args.model, pooling=args.pooling, device=args.device, max_length=args.max_length
    )
    vecs = enc.encode(
        texts,
        batch_size=args.batch_size,
        normalize=not args.no_normalize,
        show_progress_bar=True,
        truncate=not args.no_truncate,
    )
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, vecs)
    print(f"wrote {vecs.shape[0]} x {vecs.shape[1]} embeddings ({enc.pooling} pooling) to {out}")
    return 0


def _cmd_export(args) -> int:
    from unimae.encoding.st_export import export_model

    out = export_model(args.run_dir, args.output, format=args.format)
    loader = (
        "SentenceTransformer"
        if args.format == "sentence-transformers"
        else "AutoModelForCausalLM.from_pretrained"
    )
    print(f"exported {args.run_dir} to {out} ({args.format}; loads with {loader})")
    return 0


def _cmd_demo(args) -> int:
    from unimae.demo import run_demo

    run_demo(args.model, pooling=args.pooling)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="unimae", description="UniMAE: one decoder-only LLM that embeds and generates."
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser(
        "train",
        help="train UniMAE (MAR + MRC) on a causal LM",
        epilog=EPILOG_TRAIN,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    t.add_argument("--config", help="YAML file of TrainConfig fields (e.g. configs/default.yaml)")
    t.add_argument("--output-dir", help="run folder (same as output_dir=...)")
    t.add_argument(
        "--resume", action="store_true", help="continue the run in output_dir from its last checkpoint"
    )
    t.add_argument(
        "--demo", action="store_true", help="after training, encode a few sentences and generate a reply"
    )
    t.add_argument(
        "overrides", nargs="*", metavar="key=value", help="config overrides, values parsed as YAML"
    )
    t.set_defaults(func=_cmd_train)

    e = sub.add_parser("encode", help="embed texts into a .npy file")
    e.add_argument("model", help="model folder, run folder, hub id, .gguf file or 'smollm2-135m'")
    e.add_argument("texts", nargs="*", help="texts to embed (or use --input)")
    e.add_argument("-i", "--input", help=".txt (one text per line) or .jsonl file")
    e.add_argument("--text-field", default="text", help="field of .jsonl records holding the text")
    e.add_argument(
        "-o", "--output", default="embeddings.npy", help="output .npy file (default: embeddings.npy)"
    )
    e.add_argument(
        "--pooling",
        choices=["eos", "mean", "last", "echo", "prompteol"],
        help="default: what the model's unimae.json says, else eos",
    )
    e.add_argument("--batch-size", type=int, default=32)
    e.add_argument(
        "--max-length", type=int, help="tokens per text incl. EOS (default 512 or the model's context)"
    )
    e.add_argument("--no-normalize", action="store_true", help="do not L2-normalize the vectors")
    e.add_argument(
        "--no-truncate",
        action="store_true",
        help="fail on texts longer than max-length instead of truncating",
    )
    e.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: best available)")
    e.set_defaults(func=_cmd_encode)

    x = sub.add_parser(
        "export",
        help="export a run's last checkpoint (or any model) as a causal-LM or sentence-transformers folder",
    )
    x.add_argument(
        "run_dir",
        metavar="RUN_OR_MODEL",
        help="run folder holding checkpoint/ and config.yaml, or any model (folder, .gguf, 'smollm2-135m')",
    )
    x.add_argument(
        "-o", "--output", help="output folder (default for a run's causal-lm export: RUN_DIR/model)"
    )
    x.add_argument(
        "--format",
        choices=["causal-lm", "sentence-transformers"],
        default="causal-lm",
        help="causal-lm: plain AutoModelForCausalLM folder + unimae.json (default); "
        "sentence-transformers: SentenceTransformer(folder) gives the EOS embeddings",
    )
    x.set_defaults(func=_cmd_export)

    d = sub.add_parser("demo", help="similarity table and a chat reply from one model")
    d.add_argument(
        "model", nargs="?", default="runs/default/model", help="model (default: runs/default/model)"
    )
    d.add_argument("--pooling", choices=["eos", "mean", "last", "echo", "prompteol"])
    d.set_defaults(func=_cmd_demo)

    # subcommands of the evaluation and serving parts live next to them
    from unimae.evaluation.commands import register as register_evaluation
    from unimae.serving.commands import register as register_serving

    register_evaluation(sub)
    register_serving(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    from unimae.data.corpus import CorpusError
    from unimae.encoding.loading import ModelLoadError
    from unimae.tokens import TextTooLongError

    try:
        return args.func(args)
    except (
        ModelLoadError,
        CorpusError,
        TextTooLongError,
        FileNotFoundError,
        FileExistsError,
        ValueError,
    ) as e:
        print(f"unimae {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; `unimae train --resume` continues from the last checkpoint", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
