"""Export: a run's checkpoint becomes a plain causal-LM folder (or a sentence-transformers one) that loads
with transformers, embeds with ``Encoder`` as trained, and replaces an existing folder with no gap."""

import json

import numpy as np
import pytest
import torch
from conftest import random_sentences
from safetensors.torch import load_file
from test_training import _cfg as train_config
from transformers import AutoModelForCausalLM, AutoTokenizer

import unimae.io
from unimae.encoding.encoder import Encoder
from unimae.errors import UserError
from unimae.export import export
from unimae.io import sha256_file
from unimae.pipeline import train_and_export
from unimae.spec import EmbeddingSpec
from unimae.training.checkpoint import find_checkpoint, load_model_state

TEXTS = ["the cat runs .", "a dog sings in the city", "the river"]


def _cfg(model, data, out, **kw):
    """test_training's tiny config, 2 steps with no intermediate checkpoint."""
    return train_config(model, data, out, **{"steps": 2, "save_every": 50, **kw})


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n".join(random_sentences(32)) + "\n")
    return path


@pytest.fixture(scope="module")
def full_run(tiny_llama, corpus, tmp_path_factory):
    """A 2-step full fine-tune of the tiny Llama, trained and exported by the pipeline (run/model)."""
    return train_and_export(_cfg(tiny_llama, corpus, tmp_path_factory.mktemp("runs") / "full"))


@pytest.fixture(scope="module")
def lora_mntp_run(tiny_llama, corpus, tmp_path_factory):
    """A 2-step LoRA MNTP run, not exported at the end of training."""
    cfg = _cfg(
        tiny_llama,
        corpus,
        tmp_path_factory.mktemp("runs") / "mntp",
        objective="mntp",
        lora=True,
        lora_r=4,
        lora_alpha=8,
        export=False,
    )
    return train_and_export(cfg)


def test_pipeline_exports_a_plain_causal_lm_with_its_spec(full_run, tiny_llama):
    model_dir = full_run / "model"
    spec = EmbeddingSpec.load(model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    assert (spec.pooling, spec.attention, spec.objective, spec.steps) == ("eos", "causal", "unimae", 2)
    assert spec.eos_token_id == tok.eos_token_id and spec.max_length == 16
    lm = AutoModelForCausalLM.from_pretrained(model_dir)
    ids = tok("the cat", return_tensors="pt").input_ids
    assert lm.generate(ids, max_new_tokens=3, do_sample=False).shape[1] == ids.shape[1] + 3
    # the exported weights are the checkpoint's LLM, not the base model's
    trained = {k.removeprefix("llm."): v for k, v in load_model_state(find_checkpoint(full_run)).items()}
    exported, base = lm.state_dict(), AutoModelForCausalLM.from_pretrained(tiny_llama).state_dict()
    for k, v in exported.items():
        if k in trained:
            assert torch.allclose(v, trained[k], atol=1e-6), k
    assert any(not torch.equal(exported[k], base[k]) for k in base if "q_proj" in k)
    vecs = Encoder.from_pretrained(str(full_run)).encode(TEXTS)  # the run folder finds its model/
    assert vecs.shape == (3, lm.config.hidden_size) and np.isfinite(vecs).all()


def test_lora_is_merged_and_mntp_embeds_bidirectional_mean(lora_mntp_run, tiny_llama):
    assert not (lora_mntp_run / "model").exists()  # export=False
    out = export(lora_mntp_run)
    assert out == lora_mntp_run / "model"
    weights = load_file(str(out / "model.safetensors"))
    assert not any("lora" in k for k in weights)
    base = AutoModelForCausalLM.from_pretrained(tiny_llama).state_dict()
    assert any(not torch.equal(weights[k], base[k]) for k in weights if "q_proj" in k)  # merged in
    enc = Encoder.from_pretrained(str(lora_mntp_run))
    assert (enc.pooling, enc.attention) == ("mean", "bidirectional")
    assert EmbeddingSpec.load(out).objective == "mntp"


def test_sentence_transformers_export_of_a_run(full_run, lora_mntp_run, tmp_path):
    st = pytest.importorskip("sentence_transformers")
    folder = export(full_run, tmp_path / "st", format="sentence-transformers")
    ours = Encoder.from_pretrained(str(full_run), device="cpu").encode(TEXTS, normalize_embeddings=True)
    theirs = st.SentenceTransformer(str(folder), device="cpu").encode(TEXTS)
    assert float((ours * theirs).sum(1).min()) >= 0.9999
    with pytest.raises(UserError, match="EOS pooling"):  # MNTP embeds by bidirectional mean, not lasttoken
        export(lora_mntp_run, tmp_path / "st-mntp", format="sentence-transformers")
    assert not (tmp_path / "st-mntp").exists()


def _snapshot(folder):
    return {p.name: sha256_file(p) for p in folder.iterdir() if p.is_file()}


def test_export_over_an_existing_folder_never_leaves_a_gap(full_run, tiny_llama, tmp_path, monkeypatch):
    out = export(tiny_llama, tmp_path / "model")  # the old folder: the untrained model
    old = _snapshot(out)
    real_replace = unimae.io.replace_dir
    swaps = []

    def checked_replace(src, dst):
        # just before the swap: the old folder is whole and unchanged, the new one is complete beside it
        assert _snapshot(dst) == old
        assert {"config.json", "model.safetensors", "tokenizer.json", "unimae.json"} <= set(_snapshot(src))
        swaps.append(dst)
        return real_replace(src, dst)

    monkeypatch.setattr(unimae.io, "replace_dir", checked_replace)
    export(full_run, out)
    assert swaps == [out]
    assert EmbeddingSpec.load(out).objective == "unimae" and _snapshot(out) != old
    AutoModelForCausalLM.from_pretrained(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temporary folder left behind


def test_failed_export_leaves_the_old_folder_as_it_was(full_run, tiny_llama, tmp_path, monkeypatch):
    out = export(tiny_llama, tmp_path / "model")
    old = _snapshot(out)

    def crash(self, folder):
        raise OSError("disk full")

    monkeypatch.setattr(EmbeddingSpec, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        export(full_run, out)
    assert _snapshot(out) == old and sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_export_keeps_recorded_provenance_and_refuses_bad_requests(full_run, tmp_path):
    again = export(full_run / "model", tmp_path / "copy")  # a model folder, not a run
    assert EmbeddingSpec.load(again) == EmbeddingSpec.load(full_run / "model")
    with pytest.raises(UserError, match="output"):
        export(full_run / "model")
    with pytest.raises(UserError, match="format"):
        export(full_run, tmp_path / "x", format="tensorrt")
    assert json.loads((again / "unimae.json").read_text())["trained_from"]


# --- the target folder (issue 23: an export never replaces what it should not) ---------------------------


def _fake_run(folder):
    """A run folder's marks (config, metrics, checkpoint) without training: the refusals come first."""
    (folder / "checkpoint").mkdir(parents=True)
    (folder / "config.yaml").write_text("optim:\n  steps: 3\n")
    (folder / "metrics.jsonl").write_text('{"step": 1}\n')
    return folder


def _tree(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_export_refuses_a_folder_that_is_not_an_export_of_its_format(tiny_llama, tmp_path):
    from unimae.export.target import ExportTargetError

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(ExportTargetError, match="holds no unimae export.*--overwrite"):
        export(tiny_llama, mine)
    assert (mine / "notes.txt").read_text() == "keep me"
    causal = export(tiny_llama, tmp_path / "causal")  # a causal-lm export is refreshed by one...
    export(tiny_llama, causal)
    with pytest.raises(ExportTargetError, match="holds a causal-lm export, not a sentence-transformers one"):
        export(tiny_llama, causal, format="sentence-transformers")  # ...not replaced by another format
    assert (causal / "config.json").is_file()
    assert export(tiny_llama, mine, overwrite=True) == mine  # asked for: replaced
    assert not (mine / "notes.txt").exists() and (mine / "unimae.json").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert export(tiny_llama, empty) == empty


@pytest.mark.parametrize("where", ["run", "parent", "source", "cwd"])
def test_export_never_replaces_a_run_or_what_holds_the_source(where, tiny_llama, tmp_path, monkeypatch):
    from unimae.export.target import ExportTargetError

    run = _fake_run(tmp_path / "runs" / "mine")
    source = str(run)
    target = {"run": run, "parent": tmp_path / "runs", "source": tmp_path, "cwd": tmp_path / "here"}[where]
    if where == "source":  # the model to export lies inside the target
        import shutil

        source = str(shutil.copytree(tiny_llama, tmp_path / "holder" / "model"))
        target = tmp_path / "holder"
    if where == "cwd":
        target.mkdir()
        (target / "x.txt").write_text("x")
        monkeypatch.chdir(target)
    before = _tree(target)
    for overwrite in (False, True):
        with pytest.raises(ExportTargetError, match="refusing to export into"):
            export(source, target, overwrite=overwrite)
    assert _tree(target) == before


def test_export_target_that_is_a_file_is_a_disk_error(tiny_llama, tmp_path):
    from unimae.io import DiskError

    (tmp_path / "f").write_text("x")
    with pytest.raises(DiskError, match="is a file, not a folder"):
        export(tiny_llama, tmp_path / "f")
    with pytest.raises(DiskError, match="not a folder"):
        export(tiny_llama, tmp_path / "f" / "below")


def test_export_cli_refusal_is_one_line_and_overwrite_is_an_option(tiny_llama, tmp_path, capsys):
    from unimae.cli import main

    run = _fake_run(tmp_path / "run")
    assert main(["export", str(run), "-o", str(run)]) == 2
    assert main(["export", str(run), "-o", str(run), "--overwrite"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(e.startswith("unimae export: error: refusing") for e in err)
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint", "config.yaml", "metrics.jsonl"]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("x")
    assert main(["export", str(tiny_llama), "-o", str(mine)]) == 2
    assert "holds no unimae export" in capsys.readouterr().err
    assert main(["export", str(tiny_llama), "-o", str(mine), "--overwrite"]) == 0  # asked for: replaced
    assert not (mine / "notes.txt").exists() and (mine / "unimae.json").is_file()


def test_a_killed_export_leaves_a_temporary_that_the_next_export_removes(tiny_llama, tmp_path):
    """kill -9 inside the atomic folder write, in a real process; the next export cleans up after it."""
    import subprocess
    import sys

    target = tmp_path / "model"
    code = (
        "import os, signal; from unimae.io import atomic_dir\n"
        f"with atomic_dir({str(target)!r}) as tmp:\n"
        "    (tmp / 'half.bin').write_bytes(b'x' * 1000)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert proc.returncode == -9
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(".model.") and left[0].endswith(".tmp")
    export(tiny_llama, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_train_checks_its_export_target_before_training(tiny_llama, corpus, tmp_path):
    from unimae.export.target import ExportTargetError

    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    (run / "model" / "notes.txt").write_text("not an export")
    with pytest.raises(ExportTargetError, match="holds no unimae export"):
        train_and_export(_cfg(tiny_llama, corpus, run))
    assert sorted(p.name for p in run.iterdir()) == ["model"]  # nothing trained, nothing written
