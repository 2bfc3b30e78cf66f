"""Checkpoints prove themselves: a manifest of sha256 hashes, verified on resume and by load_trained."""

import json
import logging

import pytest
import torch
from safetensors.torch import load_file, save_file
from test_training import _cfg as train_config

from unimae.errors import UserError
from unimae.training.checkpoint import (
    LEGACY_MARKER,
    MANIFEST,
    CheckpointError,
    checkpoint_step,
    find_checkpoint,
    verify_checkpoint,
)
from unimae.training.loop import train
from unimae.training.trained import load_trained


def _cfg(model, data, out, steps):
    return train_config(model, data, out, steps=steps, save_every=0)


@pytest.fixture
def run2(tiny_llama, corpus_file, tmp_path):
    """A run folder with a verified checkpoint after 2 steps; resumable to 3."""
    run = train(_cfg(tiny_llama, corpus_file, tmp_path / "run", steps=2))
    return run


def _resume(run, tiny_llama, corpus_file):
    return train(_cfg(tiny_llama, corpus_file, run, steps=3), resume=True)


def test_manifest_lists_every_file_and_the_step(run2):
    ckpt = find_checkpoint(run2)
    manifest = json.loads((ckpt / MANIFEST).read_text())
    files = {p.name for p in ckpt.iterdir() if p.name != MANIFEST}
    assert manifest["step"] == 2 and set(manifest["files"]) == files
    assert {"model.safetensors", "optimizer.bin", "random_states_0.pkl"} <= files
    assert verify_checkpoint(ckpt) == 2 == checkpoint_step(ckpt)
    assert not (run2 / "checkpoint.tmp").exists() and not (run2 / "checkpoint.old").exists()


def _flip_weight(ckpt):
    """Another finite value in one weight tensor: same file size, different bytes."""
    path = ckpt / "model.safetensors"
    state = load_file(str(path))
    name = next(k for k in state if k.endswith("q_proj.weight"))
    state[name] = state[name] + 0.25
    save_file(state, str(path), metadata={"format": "pt"})
    return "model.safetensors", "sha256"


def _truncate(ckpt):
    path = ckpt / "optimizer.bin"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return "optimizer.bin", "truncated"


def _empty_rng(ckpt):
    (ckpt / "random_states_0.pkl").write_bytes(b"")
    return "random_states_0.pkl", "0 bytes"


def _remove(ckpt):
    (ckpt / "custom_checkpoint_0.pkl").unlink()  # the scheduler's state
    return "custom_checkpoint_0.pkl", "missing"


def _manifest_not_json(ckpt):
    (ckpt / MANIFEST).write_text('{"step": 2, "files": {')
    return MANIFEST, "not a valid checkpoint manifest"


def _manifest_wrong_shape(ckpt):
    (ckpt / MANIFEST).write_text(json.dumps({"step": 2, "files": {"model.safetensors": "abc"}}))
    return MANIFEST, "not a valid checkpoint manifest"


DAMAGE = [_flip_weight, _truncate, _empty_rng, _remove, _manifest_not_json, _manifest_wrong_shape]


@pytest.mark.parametrize("damage", DAMAGE, ids=lambda f: f.__name__.strip("_"))
def test_damaged_checkpoint_is_refused_naming_the_file(damage, run2, tiny_llama, corpus_file):
    ckpt = find_checkpoint(run2)
    name, why = damage(ckpt)
    before = {p.name: p.read_bytes() for p in ckpt.iterdir()}
    for route in (lambda: _resume(run2, tiny_llama, corpus_file), lambda: load_trained(run2)):
        with pytest.raises(CheckpointError, match=why) as err:
            route()
        assert str(ckpt / name) in str(err.value) and "start the run again" in str(err.value)
        assert isinstance(err.value, UserError)  # the CLI prints one line, no traceback
    assert {p.name: p.read_bytes() for p in ckpt.iterdir()} == before  # nothing resumed or overwritten


def test_undamaged_checkpoint_resumes(run2, tiny_llama, corpus_file):
    _resume(run2, tiny_llama, corpus_file)
    assert verify_checkpoint(find_checkpoint(run2)) == 3


@pytest.mark.parametrize("rng", ["emptied", "garbage", "missing"])
def test_unverified_legacy_checkpoint_warns_when_rng_state_cannot_be_restored(
    rng, run2, tiny_llama, corpus_file, caplog
):
    """A checkpoint written before manifests resumes, saying it is unverified and naming a bad RNG file."""
    ckpt = find_checkpoint(run2)
    (ckpt / MANIFEST).unlink()
    (ckpt / LEGACY_MARKER).write_text(json.dumps({"step": 2}))
    rng_file = ckpt / "random_states_0.pkl"
    if rng == "missing":
        rng_file.unlink()
    else:
        rng_file.write_bytes(b"" if rng == "emptied" else b"\x80\x04not a pickle")
    with caplog.at_level(logging.WARNING):
        _resume(run2, tiny_llama, corpus_file)
    text = caplog.text
    assert "NOT verified" in text
    assert "cannot restore the RNG state" in text and str(rng_file) in text
    assert verify_checkpoint(find_checkpoint(run2)) == 3  # the new checkpoint has a manifest again


def test_load_trained_refuses_a_folder_without_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="not a training run"):
        load_trained(tmp_path)


def test_resumed_weights_match_after_a_verified_resume(run2, tiny_llama, corpus_file, tmp_path):
    straight = train(_cfg(tiny_llama, corpus_file, tmp_path / "straight", steps=3))
    _resume(run2, tiny_llama, corpus_file)
    a, b = load_trained(straight)[0].state_dict(), load_trained(run2)[0].state_dict()
    for k, v in a.items():
        torch.testing.assert_close(v, b[k], rtol=0, atol=1e-6)


# --- the step a checkpoint claims, and a resume that would contradict it (issue 23) ----------------------


@pytest.mark.parametrize("step", [1000, -1, 0, "2", 2.5, True])
def test_an_edited_checkpoint_step_is_refused_by_resume_and_export(step, run2, tiny_llama, corpus_file):
    ckpt = find_checkpoint(run2)
    manifest = json.loads((ckpt / MANIFEST).read_text())
    (ckpt / MANIFEST).write_text(json.dumps({**manifest, "step": step}))
    config = (run2 / "config.yaml").read_text()
    for route in (lambda: _resume(run2, tiny_llama, corpus_file), lambda: load_trained(run2)):
        with pytest.raises(CheckpointError, match=str(ckpt / MANIFEST)):
            route()
    assert (run2 / "config.yaml").read_text() == config and not (run2 / "model").exists()


def test_resume_may_extend_or_finish_a_run_but_not_end_it_before_its_checkpoint(
    run2, tiny_llama, corpus_file, capsys
):
    from unimae.cli import main
    from unimae.training.config import ConfigError

    config = (run2 / "config.yaml").read_text()
    with pytest.raises(ConfigError, match="optim.steps=1, but the checkpoint .* is at step 2"):
        train(_cfg(tiny_llama, corpus_file, run2, steps=1), resume=True)
    assert main(["train", "--resume", "--output-dir", str(run2), "steps=1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is at step 2" in err
    assert main(["train", "--resume", "--output-dir", str(run2), "lr=0.5"]) == 2  # what is trained changed
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "optim.lr: 0.001 -> 0.5" in err
    assert (run2 / "config.yaml").read_text() == config  # nothing rewritten
    metrics = (run2 / "metrics.jsonl").read_text()
    train(_cfg(tiny_llama, corpus_file, run2, steps=2), resume=True)  # at its last step: nothing to train
    assert (run2 / "metrics.jsonl").read_text() == metrics and checkpoint_step(find_checkpoint(run2)) == 2
    assert load_trained(run2)[2].steps == 2
