"""Two CPU processes (gloo) with the same global batch compute the same losses as one process."""

import json
import os
import socket
import subprocess
import sys

import pytest

from unimae.training.checkpoint import find_checkpoint, verify_checkpoint

# a 3-step run of the tiny model, the same for every process count and engine
ARGS = [
    "steps=3",
    "batch_size=8",
    "max_length=16",
    "save_every=0",
    "lr=1e-3",
    "decoder_lr=1e-3",
    "warmup_steps=1",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(nproc, model, data, out, env, *extra):
    args = [
        *extra,
        f"model={model}",
        f"data={data}",
        f"output_dir={out}",
        *ARGS,
    ]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={nproc}",
        f"--master_port={_free_port()}",
        "-m",
        "unimae.cli",
        "train",
        *args,
    ]
    subprocess.run(cmd, check=True, env=env, timeout=300, capture_output=True)
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_two_processes_match_one(tiny_llama, corpus_file, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true"}
    try:
        one = _run(1, tiny_llama, corpus_file, tmp_path / "one", env)
        # with non-reentrant gradient checkpointing, which must not change a number under DDP
        two = _run(2, tiny_llama, corpus_file, tmp_path / "two", env, "gradient_checkpointing=true")
    except subprocess.CalledProcessError as e:
        pytest.fail(e.stderr.decode()[-3000:])
    assert [m["step"] for m in two] == [1, 2, 3]
    for a, b in zip(one, two):
        assert a["tokens"] == b["tokens"]
        assert a["mar_loss"] == pytest.approx(b["mar_loss"], rel=1e-4)
        assert a["mrc_loss"] == pytest.approx(b["mrc_loss"], rel=1e-4)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-3)
    ckpt = find_checkpoint(tmp_path / "two")  # written once, by the main process, and complete
    assert verify_checkpoint(ckpt) == 3


def test_contrastive_negatives_are_gathered_so_two_processes_match_one(tiny_llama, corpus_file, tmp_path):
    """Each process scores its texts against the candidates of every process (all_gather with gradients),
    so the contrastive loss of 2 x 4 texts is the loss of 8 texts in one process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true"}
    extra = ("contrastive.weight=1.0", "encode_prompt=say {text} now")
    try:
        one = _run(1, tiny_llama, corpus_file, tmp_path / "one", env, *extra)
        two = _run(2, tiny_llama, corpus_file, tmp_path / "two", env, *extra)
    except subprocess.CalledProcessError as e:
        pytest.fail(e.stderr.decode()[-3000:])
    for a, b in zip(one, two, strict=True):
        assert a["contrastive_loss"] == pytest.approx(b["contrastive_loss"], rel=1e-4)
        assert a["mar_loss"] == pytest.approx(b["mar_loss"], rel=1e-4)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-3)
