"""FSDP through Accelerate: two CPU processes (gloo) compute the same losses as one process.

Accelerate offers FSDP only on accelerators; ``tests/fsdp_cpu_train.py`` switches its state to FSDP on
CPU with the plugin set by ``configs/accelerate/fsdp.yaml`` (full sharding, transformer-layer wrapping,
``use_orig_params`` for the two learning-rate groups), so the objective, optimizer groups, gradient
clipping and loss normalisation run sharded here.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_distributed import ARGS, _free_port, _run

ROOT = Path(__file__).parent.parent


def test_fsdp_two_processes_match_one(tiny_llama, corpus_file, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true"}
    out = tmp_path / "fsdp"
    cmd = [
        str(Path(sys.executable).parent / "accelerate"),
        "launch",
        "--config_file",
        str(ROOT / "configs" / "accelerate" / "fsdp.yaml"),
        "--main_process_port",
        str(_free_port()),
        str(ROOT / "tests" / "fsdp_cpu_train.py"),
        f"model={tiny_llama}",
        f"data={corpus_file}",
        f"output_dir={out}",
        *ARGS,
    ]
    try:
        done = subprocess.run(cmd, check=True, env=env, timeout=300, capture_output=True, text=True)
        one = _run(1, tiny_llama, corpus_file, tmp_path / "one", env)
    except subprocess.CalledProcessError as e:
        err = e.stderr if isinstance(e.stderr, str) else e.stderr.decode()
        pytest.fail(err[-3000:])
    assert "2 process(es), FSDP" in done.stdout + done.stderr  # really sharded, not DDP
    two = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in two] == [1, 2, 3]
    for a, b in zip(one, two, strict=True):
        assert a["tokens"] == b["tokens"]
        for key in ("mar_loss", "mrc_loss", "grad_norm"):
            assert a[key] == pytest.approx(b[key], rel=1e-5), key
