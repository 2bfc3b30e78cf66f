"""Embedding throughput of ``unimae serve`` under concurrent clients: dynamic batching vs one request at a time.

Starts two servers on 127.0.0.1 in the same run: one with dynamic batching (``--max-batch-size 32``) and
one that makes a forward pass per request (``--max-batch-size 1``). In ``--rounds`` alternating rounds,
``--clients`` concurrent clients send single short texts to ``POST /v1/embeddings`` of one, then the other
(``--requests`` in all per server); prints requests/s, p50/p95 latency and the ratio. The clients run on
the same machine as the servers; the idle server uses no CPU while the other is measured.

    python benchmarks/serve_throughput.py                          # runs/default/model (else smollm2-135m)
    python benchmarks/serve_throughput.py --clients 32 --requests 640 --model smollm2-135m
    python benchmarks/serve_throughput.py --backend onnx-int8          # embeddings on the int8 graph
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from unimae.data.wiki import wiki_sentences


def default_model() -> str:
    return "runs/default/model" if Path("runs/default/model/config.json").exists() else "smollm2-135m"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    model: str, max_batch_size: int, timeout_ms: float, backend: str | None = None, max_tokens: int = 256
) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "unimae.cli",
        "serve",
        model,
        "--port",
        str(port),
        "--device",
        "cpu",
        "--max-batch-size",
        str(max_batch_size),
        "--batch-timeout-ms",
        str(timeout_ms),
        "--batch-max-tokens",
        str(max_tokens) if max_tokens else "null",
        "--log-level",
        "warning",
    ] + (["--backend", backend] if backend else [])
    proc = subprocess.Popen(cmd, env={**os.environ, "UNIMAE_API_KEY": ""}, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(1200):
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start in 120 s")


async def load(url: str, texts: list[str], clients: int, requests: int) -> tuple[float, list[float]]:
    """``clients`` workers send ``requests`` requests in all; (wall seconds, per-request latencies)."""
    latencies: list[float] = []
    counter = iter(range(requests))
    async with httpx.AsyncClient(
        base_url=url, timeout=300, limits=httpx.Limits(max_connections=clients)
    ) as c:

        async def worker():
            for i in counter:
                t0 = time.perf_counter()
                r = await c.post("/v1/embeddings", json={"input": texts[i % len(texts)]})
                r.raise_for_status()
                latencies.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(clients)])
        return time.perf_counter() - t0, latencies


def pct(xs: list[float], q: float) -> float:
    return statistics.quantiles(xs, n=100)[q - 1] if len(xs) > 1 else xs[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=default_model())
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--requests", type=int, default=512, help="requests per server setting")
    p.add_argument("--max-batch-size", type=int, default=32)
    p.add_argument("--batch-timeout-ms", type=float, default=5.0)
    p.add_argument(
        "--batch-max-tokens", type=int, default=256, help="the batched server's budget (0: one pass a batch)"
    )
    p.add_argument("--rounds", type=int, default=4, help="alternating measurement rounds per setting")
    p.add_argument("--backend", default=None, help="torch, onnx, onnx-int8, openvino, openvino-int8")
    args = p.parse_args()

    texts = [t for t in wiki_sentences("heldout") if len(t.split()) <= 20][:256]  # short texts
    settings = {"dynamic batching": args.max_batch_size, "one request at a time": 1}
    servers = {
        name: start_server(args.model, mbs, args.batch_timeout_ms, args.backend, args.batch_max_tokens)
        for name, mbs in settings.items()
    }
    walls = {name: 0.0 for name in settings}
    lats: dict[str, list[float]] = {name: [] for name in settings}
    batches = {}
    try:
        for name, (_, url) in servers.items():  # warm-up, and the counters before the measured rounds
            asyncio.run(load(url, texts, args.clients, 2 * args.clients))
            batches[name] = -httpx.get(f"{url}/health").json()["embedding_batches"]
        per_round = args.requests // args.rounds
        for _ in range(args.rounds):  # alternate the two servers, so both see the same background load
            for name, (_, url) in servers.items():
                wall, lat = asyncio.run(load(url, texts, args.clients, per_round))
                walls[name] += wall
                lats[name] += lat
        for name, (_, url) in servers.items():
            batches[name] += httpx.get(f"{url}/health").json()["embedding_batches"]
    finally:
        for proc, _ in servers.values():
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    rps = {name: len(lats[name]) / walls[name] for name in settings}
    for name, mbs in settings.items():
        n = len(lats[name])
        print(
            f"{name:22s} (--max-batch-size {mbs:2d}): {rps[name]:7.1f} req/s   "
            f"p50 {1000 * pct(lats[name], 50):7.1f} ms   p95 {1000 * pct(lats[name], 95):7.1f} ms   "
            f"{batches[name]} batches for {n} requests (mean {n / max(batches[name], 1):.1f} texts each)"
        )
    print(
        f"model {args.model} ({args.backend or 'default'} backend, --batch-max-tokens {args.batch_max_tokens}); "
        f"{args.clients} concurrent clients, {args.rounds} alternating rounds, "
        f"mean {statistics.mean(len(t.split()) for t in texts):.1f} words per text; "
        f"throughput ratio batched / one at a time: {rps['dynamic batching'] / rps['one request at a time']:.2f}x"
    )


if __name__ == "__main__":
    main()
