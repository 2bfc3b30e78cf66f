"""The command line's thread defaults (docs/backends.md, "beside a busy neighbour") and the user's overrides.

OpenMP reads its wait policy once, when it loads; so the default must be set before torch is imported,
which a subprocess shows (``OMP_DISPLAY_ENV`` makes the OpenMP runtime print what it read).
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest

from unimae import cli
from unimae.cli import THREAD_ENV_DEFAULTS, apply_thread_defaults, main

SRC = str(Path(cli.__file__).parents[2])


def test_defaults_fill_only_what_the_user_left_unset():
    env: dict[str, str] = {}
    apply_thread_defaults(env)
    assert env == THREAD_ENV_DEFAULTS and env["OMP_WAIT_POLICY"] == "PASSIVE"
    env = {"OMP_WAIT_POLICY": "ACTIVE"}
    apply_thread_defaults(env)
    assert env["OMP_WAIT_POLICY"] == "ACTIVE"


def _openmp_reads(env_policy: str | None) -> str:
    """The wait policy the OpenMP runtime of a ``unimae encode --help`` process read at load."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env |= {"OMP_DISPLAY_ENV": "TRUE", "OMP_NUM_THREADS": "1", "PYTHONPATH": SRC}
    if env_policy is not None:
        env["OMP_WAIT_POLICY"] = env_policy
    out = subprocess.run(
        [sys.executable, "-m", "unimae.cli", "encode", "--help"], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [line for line in out.stderr.splitlines() if "OMP_WAIT_POLICY =" in line]
    assert lines, "torch's OpenMP runtime did not load: the test shows nothing"
    return lines[0].split("=", 1)[1].strip().strip("'")


def test_cli_sets_the_wait_policy_before_openmp_loads_and_the_user_wins():
    assert _openmp_reads(None) == "PASSIVE"
    assert _openmp_reads("ACTIVE") == "ACTIVE"


def test_importing_the_cli_imports_no_torch():
    """What lets ``main`` set OpenMP's environment first: neither ``unimae`` nor ``unimae.cli`` loads torch."""
    code = "import sys, unimae, unimae.cli; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": SRC}, capture_output=True, text=True
    )
    assert out.stdout.strip() == "False", out.stderr[-2000:]


@pytest.fixture
def thread_calls(monkeypatch):
    """Every ``torch.set_num_threads`` call (not applied: the test process keeps its threads)."""
    import torch

    calls: list[int] = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    return calls


class Stop(Exception):
    """Raised by a stand-in to end a command once its options are read."""


def _recording(fn, seen: dict, stop: bool = False):
    """A stand-in for ``fn`` with its signature (the CLI reads it) that records its keyword arguments."""

    @functools.wraps(fn)
    def record(*args, **kwargs):
        seen.update(kwargs)
        if stop:
            raise Stop

    return record


def test_encode_threads_option_wins_and_default_leaves_torchs(tiny_gpt2, tmp_path, thread_calls):
    out = str(tmp_path / "v")
    assert main(["encode", str(tiny_gpt2), "a text", "-o", out]) == 0
    assert thread_calls == []  # no --threads: OMP_NUM_THREADS, else torch's one a core
    assert main(["encode", str(tiny_gpt2), "a text", "-o", out, "--threads", "1"]) == 0
    assert thread_calls == [1]


def test_serve_rag_and_eval_take_threads(monkeypatch, tiny_gpt2, tmp_path, thread_calls):
    from unimae.evaluation import benchmark
    from unimae.serving import server

    seen: dict = {}
    monkeypatch.setattr(server, "serve", _recording(server.serve, seen))
    assert main(["serve", "some-model", "--threads", "2"]) == 0
    assert thread_calls == [2] and "threads" not in seen  # applied by the CLI, not passed on
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("the cat sat on the mat. a dog runs.")
    index = str(tmp_path / "index")
    assert (
        main(["rag", "index", str(docs), "--model", str(tiny_gpt2), "--index", index, "--threads", "3"]) == 0
    )
    assert main(["rag", "search", "cat", "--index", index, "--threads", "1"]) == 0
    assert thread_calls == [2, 3, 1]
    monkeypatch.setattr(benchmark, "evaluate_model", _recording(benchmark.evaluate_model, seen, stop=True))
    with pytest.raises(Stop):
        main(["eval", "some-model", "--threads", "4"])
    assert thread_calls == [2, 3, 1, 4]


@pytest.mark.parametrize("policy, spins", [("PASSIVE", "0"), ("ACTIVE", None), (None, None)])
def test_onnx_runtime_threads_follow_the_wait_policy(tiny_llama, tmp_path, monkeypatch, policy, spins):
    pytest.importorskip("onnxruntime")
    from unimae.encoding.backend_build import export_onnx
    from unimae.encoding.backends import OnnxRuntimeBody
    from unimae.encoding.loading import load_causal_lm

    file = tmp_path / "model.onnx"
    export_onnx(load_causal_lm(str(tiny_llama))[0], file)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    if policy:
        monkeypatch.setenv("OMP_WAIT_POLICY", policy)
    options = OnnxRuntimeBody(file, threads=2).session.get_session_options()
    try:
        entry = options.get_session_config_entry("session.intra_op.allow_spinning")
    except RuntimeError:  # not set: ONNX Runtime's default, spinning
        entry = None
    assert entry == spins
