"""RAG index figures: build time for a few thousand chunks, an incremental update, and query latency.

Documents are the Wikipedia articles shipped with gensim (one .jsonl record per article), chunked into
``--chunk-words``-word windows. Prints the build time (embedding + FAISS + writing), the time to add one
new file to the built index (only its chunks are embedded), and per-query latency p50/p95 of embedding
the question + FAISS search, and of the FAISS search alone.

    python benchmarks/rag_index.py                            # runs/default/model (else smollm2-135m)
    python benchmarks/rag_index.py --chunk-words 60 --max-chunks 3000 --queries 100
    python benchmarks/rag_index.py --max-chunks 2000 --backends torch onnx-int8   # side by side, same chunks
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from unimae.data.wiki import wiki_articles, wiki_sentences
from unimae.encoding.encoder import Encoder
from unimae.rag import build_index, chunk_text


def default_model() -> str:
    return "runs/default/model" if Path("runs/default/model/config.json").exists() else "smollm2-135m"


def pct(xs: list[float], q: int) -> float:
    return statistics.quantiles(xs, n=100)[q - 1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=default_model())
    p.add_argument("--chunk-words", type=int, default=60)
    p.add_argument("--overlap", type=int, default=15)
    p.add_argument("--max-chunks", type=int, default=3000, help="stop adding articles past this many chunks")
    p.add_argument("--queries", type=int, default=100)
    p.add_argument("-k", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--backends", nargs="+", default=["torch"], help="each builds the same index in turn")
    args = p.parse_args()
    builds = {
        b: run(args, Encoder.from_pretrained(args.model, device="cpu", backend=b)) for b in args.backends
    }
    if len(builds) > 1:
        first = args.backends[0]
        print("build time ratio: " + ", ".join(f"{b} {builds[first] / s:.2f}x" for b, s in builds.items()))


def run(args, enc: Encoder) -> float:
    """Build, update and query one index with ``enc``; print the figures; return the build seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        docs = Path(tmp) / "docs"
        docs.mkdir()
        n_chunks, n_articles = 0, 0
        with open(docs / "wiki.jsonl", "w") as f:
            for title, sentences in sorted(wiki_articles().items()):
                text = " ".join(sentences)
                n = len(chunk_text(text, args.chunk_words, args.overlap))
                if not n or n_chunks + n > args.max_chunks:
                    continue
                f.write(json.dumps({"title": title, "text": text}) + "\n")
                n_chunks, n_articles = n_chunks + n, n_articles + 1
        t0 = time.perf_counter()
        index, up = build_index(
            enc,
            [docs],
            Path(tmp) / "index",
            model_name=args.model,
            chunk_words=args.chunk_words,
            overlap=args.overlap,
            batch_size=args.batch_size,
            show_progress_bar=False,
        )
        build_s = time.perf_counter() - t0
        (docs / "extra.txt").write_text(" ".join(wiki_sentences("heldout")[:40]))
        t0 = time.perf_counter()
        _, up2 = build_index(
            enc, [docs], Path(tmp) / "index", batch_size=args.batch_size, show_progress_bar=False
        )
        update_s = time.perf_counter() - t0
        size = sum(f.stat().st_size for f in (Path(tmp) / "index").iterdir())

        questions = wiki_sentences("heldout")[40 : 40 + args.queries]
        full, search = [], []
        for q in questions:
            t0 = time.perf_counter()
            vec = enc.encode(q, normalize_embeddings=True)
            t1 = time.perf_counter()
            index.search_vector(vec, args.k)
            t2 = time.perf_counter()
            full.append(t2 - t0)
            search.append(t2 - t1)

    print(
        f"model {args.model} ({enc.backend}); {n_articles} articles -> {up.total_chunks} chunks of {args.chunk_words} words "
        f"(overlap {args.overlap}), index on disk {size / 2**20:.1f} MiB"
    )
    print(f"  build (embed + FAISS + write): {build_s:6.1f} s   ({up.total_chunks / build_s:.1f} chunks/s)")
    print(
        f"  add 1 new file to the built index: {update_s:5.2f} s   ({up2.chunks_embedded} chunks embedded, "
        f"{len(up2.unchanged)} unchanged file skipped)"
    )
    print(
        f"  query (embed question + top-{args.k} search), {len(questions)} queries: "
        f"p50 {1000 * pct(full, 50):.1f} ms, p95 {1000 * pct(full, 95):.1f} ms"
    )
    print(f"  FAISS search alone: p50 {1000 * pct(search, 50):.3f} ms, p95 {1000 * pct(search, 95):.3f} ms")
    return build_s


if __name__ == "__main__":
    main()
