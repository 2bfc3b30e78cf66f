"""Encoding beside a busy neighbour: texts/s per thread setting, quiet and contended, side by side in one run.

Each cell is a fresh worker process (an OpenMP wait policy is read once, when the OpenMP runtime loads): it
loads the encoder, warms up, then embeds the same short texts (about 12 tokens, batch 32, as `unimae encode`
does) again and again for ``--seconds`` and prints texts/s. A *contended* cell first starts ``--neighbours``
CPU-bound processes (a busy Python loop each, like one single-threaded training job) and stops them after;
a *quiet* cell starts none. Rounds alternate quiet and contended cells of every setting, so slow drift in
the machine's own background load reaches every setting alike; the script prints ``uptime`` before and after.

Settings: ``BACKEND:THREADS:POLICY``; POLICY is OMP_WAIT_POLICY (``unset``: libgomp's default, a short spin
before sleeping; ``passive``; ``active``) and ``cli`` takes whatever ``unimae``'s command line chooses
(``unimae.cli.apply_thread_defaults``), THREADS as ``--threads`` (0: none given, the CLI's default).

    OMP_NUM_THREADS=1 MALLOC_MMAP_THRESHOLD_=1048576 nice -n 5 python benchmarks/neighbour_threads.py \
        --model smollm2-135m --neighbours 1 --rounds 2
    ... --settings torch:1:unset torch:2:unset torch:2:passive openvino-int8:2:unset \
        --exports openvino-int8=exported/base-openvino-int8
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_SETTINGS = [
    "torch:1:unset",
    "torch:2:unset",
    "torch:1:passive",
    "torch:2:passive",
    "torch:2:active",
    "torch:0:cli",
]
BUSY_LOOP = "import time\nwhile True:\n    sum(i * i for i in range(100_000))"


def worker_env(threads: int, policy: str) -> dict[str, str]:
    """The environment of a worker: ``threads`` (0: none set) and the OpenMP wait policy of ``policy``."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, ["src", env.get("PYTHONPATH")]))
    if threads and policy != "cli":
        env["OMP_NUM_THREADS"] = str(threads)
    if policy in ("passive", "active"):
        env["OMP_WAIT_POLICY"] = policy.upper()
    return env


def run_worker(spec: dict) -> None:
    """In the worker process: embed ``spec['texts']`` for ``spec['seconds']``; print ``{"rate": texts/s}``."""
    if spec["policy"] == "cli":  # as `unimae encode` sets them, before torch loads
        from unimae.cli import apply_thread_defaults

        apply_thread_defaults()
    import torch

    if spec["policy"] == "cli" and spec["threads"]:  # as `--threads T` does
        torch.set_num_threads(spec["threads"])

    from unimae.encoding.encoder import Encoder

    enc = Encoder.from_pretrained(spec["model"], device="cpu", backend=spec["backend"])
    texts = spec["texts"]
    enc.encode(texts, batch_size=32)  # warm-up: kernels for these shapes
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < spec["seconds"]:
        enc.encode(texts, batch_size=32)
        done += len(texts)
    rate = done / (time.perf_counter() - start)
    print(json.dumps({"rate": rate, "torch_threads": torch.get_num_threads()}), flush=True)


def cell(spec: dict, neighbours: int) -> dict:
    """One measurement: ``neighbours`` busy processes started, a worker run beside them, all stopped."""
    busy = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(neighbours)]
    try:
        out = subprocess.run(
            [sys.executable, __file__, "--worker", json.dumps(spec)],
            env=worker_env(spec["threads"], spec["policy"]),
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        for p in busy:
            p.kill()
            p.wait()
    return json.loads(out.stdout.strip().splitlines()[-1])


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def short_texts(model: str, n: int) -> list[str]:
    sys.path.insert(0, str(Path(__file__).parent))
    from encode_backends import texts_of
    from transformers import AutoTokenizer

    from unimae.encoding.loading import resolve_model_path

    return texts_of(AutoTokenizer.from_pretrained(resolve_model_path(model)), n, 12)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--settings", nargs="+", default=DEFAULT_SETTINGS, help="BACKEND:THREADS:POLICY")
    p.add_argument("--exports", nargs="*", default=[], help="BACKEND=FOLDER: an export to use for BACKEND")
    p.add_argument("--neighbours", type=int, default=1, help="busy processes in a contended cell")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--seconds", type=float, default=15.0, help="timed encoding per cell")
    p.add_argument("--n", type=int, default=64, help="texts (embedded in batches of 32)")
    p.add_argument("--json", default=None, help="write every cell here too")
    args = p.parse_args()
    if args.worker:
        return run_worker(json.loads(args.worker))
    folders = dict(e.split("=", 1) for e in args.exports)
    texts = short_texts(args.model, args.n)
    print("before:", uptime(), flush=True)
    cells = []
    for rnd in range(args.rounds):
        for setting in args.settings:
            backend, threads, policy = setting.split(":")
            spec = {"model": folders.get(backend, args.model), "backend": backend, "threads": int(threads)}
            spec |= {"policy": policy, "texts": texts, "seconds": args.seconds}
            for condition, neighbours in (("quiet", 0), ("contended", args.neighbours)):
                got = cell(spec, neighbours)
                cells.append({"round": rnd, "setting": setting, "condition": condition, **got})
                print(json.dumps(cells[-1]), flush=True)
    print("after:", uptime(), flush=True)
    print_table(cells, args.settings)
    if args.json:
        Path(args.json).write_text(json.dumps(cells, indent=1))


def print_table(cells: list[dict], settings: list[str]) -> None:
    """Median texts/s per setting and condition (each round's figures in brackets)."""
    print("\n| setting (backend:threads:wait policy) | quiet texts/s | contended texts/s | torch threads |")
    print("|---|---|---|---|")
    for s in settings:
        row = []
        for condition in ("quiet", "contended"):
            rates = [c["rate"] for c in cells if c["setting"] == s and c["condition"] == condition]
            row.append(f"{statistics.median(rates):.1f} ({', '.join(f'{r:.1f}' for r in rates)})")
        threads = {c["torch_threads"] for c in cells if c["setting"] == s}
        print(f"| {s} | {row[0]} | {row[1]} | {', '.join(map(str, sorted(threads)))} |")


if __name__ == "__main__":
    main()
