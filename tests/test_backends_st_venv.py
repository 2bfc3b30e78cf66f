"""sentence-transformers' own ``backend="onnx"`` / ``"openvino"`` load unimae's exports, without unimae.

The optimum packages behind those backends need transformers < 4.58, so ``scripts/st_backend_check.sh``
checks in a side venv (``runs/st-venv``, built on first use from the package registry) that never installs
unimae: a tiny random Llama exported as onnx, onnx-int8, openvino and openvino-int8, each encoded by
``SentenceTransformer(folder, backend=...)`` against unimae's PyTorch vectors (min cosine 0.9999 fp32, 0.99
int8). Slow: a minute or two, more when the side venv is built.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "st_backend_check.sh"


def _registry_reachable() -> bool:
    """Whether pip reaches the package registry (optimum-onnx is not among this machine's local wheels)."""
    probe = [sys.executable, "-m", "pip", "index", "versions", "optimum-onnx"]
    try:
        return subprocess.run(probe, capture_output=True, timeout=120).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def _run(*args: str, timeout: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    return subprocess.run(
        ["bash", str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_sentence_transformers_backends_load_the_exports_without_unimae(tmp_path):
    setup = _run("setup", timeout=1800)
    if setup.returncode != 0:
        if not _registry_reachable():
            pytest.skip("the side venv needs the package registry, which is not reachable")
        pytest.fail(f"building the side venv failed:\n{setup.stdout[-3000:]}\n{setup.stderr[-3000:]}")
    result = _run("tiny", str(tmp_path / "st-check"), timeout=1800)
    report = [line for line in result.stdout.splitlines() if line.startswith(("OK", "FAIL"))]
    assert result.returncode == 0, f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    assert all(line.startswith("OK") for line in report), report
    assert sorted(line.split()[1] for line in report) == ["onnx", "onnx-int8", "openvino", "openvino-int8"]
