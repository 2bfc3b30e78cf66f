"""CLI subcommands of the serving part: ``serve`` and ``rag {index,ask,search}``."""

from __future__ import annotations

import argparse

EPILOG_SERVE = """examples:
  unimae serve runs/default/model                          # http://127.0.0.1:8000/v1, model name 'default'
  unimae serve runs/default/model --port 9000 --api-key s3cret --index runs/rag
  UNIMAE_API_KEY=s3cret unimae serve smollm2-135m --host 0.0.0.0 --no-truncate
then: openai.OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="s3cret").embeddings.create(...)"""

EPILOG_RAG = """examples:
  unimae rag index examples/docs --model runs/default/model --index runs/rag
  unimae rag ask "Who built the lighthouse?" --index runs/rag     # model: the one the index was built with
  unimae rag search "lighthouse keeper" --index runs/rag -k 3"""


def _cmd_serve(args) -> int:
    from unimae.serving.server import serve

    serve(
        args.model,
        host=args.host,
        port=args.port,
        served_model_name=args.served_model_name,
        api_key=args.api_key,
        index_dir=args.index,
        device=args.device,
        max_length=args.max_length,
        log_level=args.log_level,
        max_batch_size=args.max_batch_size,
        batch_timeout_ms=args.batch_timeout_ms,
        max_inputs=args.max_inputs,
        truncate=args.truncate,
        max_body_bytes=args.max_body_bytes,
        default_max_tokens=args.default_max_tokens,
    )
    return 0


def _load(args, index_must_exist: bool):
    """(encoder, index or None, model): the model defaults to the one that built the index."""
    from pathlib import Path

    from unimae.encoding.encoder import Encoder
    from unimae.serving.rag import MANIFEST, RagIndex

    exists = index_must_exist or (args.index / MANIFEST).exists()
    index = RagIndex.open(args.index) if exists else None
    model = args.model or (index.model_name if index is not None else None)
    if model is None:
        raise ValueError(f"give --model: there is no index at {args.index} yet to take it from")
    if Path(model).exists():  # recorded absolute, so the index works from any folder
        model = str(Path(model).resolve())
    encoder = Encoder.from_pretrained(model, device=args.device)
    if index is not None:
        index.check_model(encoder)
    return encoder, index, model


def _cmd_rag_index(args) -> int:
    from unimae.serving.rag import build_index

    encoder, _, model = _load(args, index_must_exist=False)
    index, up = build_index(
        encoder,
        args.docs,
        args.index,
        model_name=model,
        chunk_words=args.chunk_words,
        overlap=args.overlap,
        batch_size=args.batch_size,
        prune=args.prune,
        show_progress_bar=True,
    )
    print(
        f"index {args.index}: {len(up.added)} new, {len(up.updated)} changed, {len(up.unchanged)} unchanged, "
        f"{len(up.removed)} removed files; embedded {up.chunks_embedded} chunks; {up.total_chunks} chunks in all"
    )
    return 0


def _print_hits(hits) -> None:
    for i, h in enumerate(hits, start=1):
        text = " ".join(h.chunk.text.split())
        print(
            f"[{i}] {h.chunk.source}  (cosine {h.score:.3f})  {text[:150]}{'...' if len(text) > 150 else ''}"
        )


def _cmd_rag_ask(args) -> int:
    from unimae.serving.rag import ask

    encoder, index, _ = _load(args, index_must_exist=True)
    result = ask(encoder, index, args.question, k=args.k, max_new_tokens=args.max_new_tokens)
    print(f"question: {args.question}\n\nanswer: {result.answer}\n\nsources:")
    _print_hits(result.hits)
    return 0


def _cmd_rag_search(args) -> int:
    encoder, index, _ = _load(args, index_must_exist=True)
    _print_hits(index.search(encoder, args.query, args.k))
    return 0


def register(sub) -> None:
    """Add serving subcommands to the ``unimae`` argument parser's subparsers."""
    from pathlib import Path

    s = sub.add_parser(
        "serve",
        help="OpenAI-compatible server: embeddings, completions, chat, RAG from one model",
        epilog=EPILOG_SERVE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument("model", help="model folder, run folder, .gguf file or 'smollm2-135m'")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--served-model-name", help="name clients use as 'model' (default: from the path)")
    s.add_argument(
        "--api-key", help="require 'Authorization: Bearer KEY' (default: $UNIMAE_API_KEY, else none)"
    )
    s.add_argument(
        "--max-batch-size", type=int, default=32, help="texts per embedding forward pass (1: no batching)"
    )
    s.add_argument(
        "--batch-timeout-ms",
        type=float,
        default=5.0,
        help="how long a request waits for others to batch with",
    )
    s.add_argument("--max-inputs", type=int, default=2048, help="most texts in one embeddings request")
    s.add_argument(
        "--truncate",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="cut texts over --max-length tokens (EOS kept) or reject them with 400 (--no-truncate)",
    )
    s.add_argument(
        "--max-length", type=int, help="tokens per embedded text incl. EOS (default 512 or the context)"
    )
    s.add_argument(
        "--max-body-bytes", type=int, default=8 * 2**20, help="larger request bodies get 413 (default 8 MiB)"
    )
    s.add_argument(
        "--default-max-tokens", type=int, default=256, help="chat completion length when none is asked"
    )
    s.add_argument("--index", help="a `unimae rag index` folder: enables POST /v1/rag")
    s.add_argument("--device", help="cpu, cuda, mps (default: best available)")
    s.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    s.set_defaults(func=_cmd_serve)

    r = sub.add_parser(
        "rag",
        help="retrieval + answer from one model: index documents, ask questions",
        epilog=EPILOG_RAG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rsub = r.add_subparsers(dest="rag_command", required=True)

    def common(p, model_help: str):
        p.add_argument("--index", type=Path, required=True, help="index folder")
        p.add_argument("--model", help=model_help)
        p.add_argument("--device", help="cpu, cuda, mps (default: best available)")

    ri = rsub.add_parser(
        "index", help="add .txt/.md/.jsonl files to an index (only new or changed files are embedded)"
    )
    ri.add_argument("docs", nargs="+", help="files or folders")
    common(ri, "model to embed with (default: the one that built the index)")
    ri.add_argument(
        "--chunk-words", type=int, help="words per chunk (default 120; fixed when the index is created)"
    )
    ri.add_argument("--overlap", type=int, help="words shared by neighbouring chunks (default 30)")
    ri.add_argument("--batch-size", type=int, default=32)
    ri.add_argument("--prune", action="store_true", help="also drop files that no longer exist")
    ri.set_defaults(func=_cmd_rag_index)

    ra = rsub.add_parser("ask", help="retrieve the top-k chunks and answer from them, citing [n]")
    ra.add_argument("question")
    common(ra, "model (default: the one that built the index)")
    ra.add_argument("-k", type=int, default=4, help="chunks to retrieve (default 4)")
    ra.add_argument("--max-new-tokens", type=int, default=200)
    ra.set_defaults(func=_cmd_rag_ask)

    rs = rsub.add_parser("search", help="show the top-k chunks for a query (no generation)")
    rs.add_argument("query")
    common(rs, "model (default: the one that built the index)")
    rs.add_argument("-k", type=int, default=4)
    rs.set_defaults(func=_cmd_rag_search)
