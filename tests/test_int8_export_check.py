"""The parity check of int8 exports: measured on built-in sentences, recorded, and a floor that refuses.

Tiny random Llama. Its int8 graphs are so close to PyTorch that the figure can round to 1.0, so the
mechanics (a floor above the measured figure refuses and writes nothing, one below writes the folder) are
tested on a *damaged* graph: the real exported graph with a fixed error added to its output. The real
figure on the default model is in docs/backends.md.
"""

from __future__ import annotations

import json
import re

import pytest
from conftest import make_tiny_llama

from unimae.cli import main
from unimae.encoding.backend_build import PARITY_TEXTS, parity
from unimae.encoding.backends import BACKEND_FILE
from unimae.encoding.encoder import Encoder
from unimae.errors import UserError
from unimae.export import export

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")

GRAPH_DIR = {"onnx-int8": "onnx", "openvino-int8": "openvino"}


@pytest.fixture
def damaged(monkeypatch):
    """Graphs loaded by the check give their states plus a fixed error that depends on the token ids."""
    from unimae.encoding import backend_build

    real = backend_build.load_body

    def load(folder, backend):
        body = real(folder, backend)
        return lambda ids, mask: body(ids, mask) + 0.3 * (ids[..., None] % 3 - 1)

    monkeypatch.setattr(backend_build, "load_body", load)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_llama(tmp_path_factory.mktemp("int8-check") / "llama")


def _measured(folder, fmt) -> dict:
    return json.loads((folder / GRAPH_DIR[fmt] / BACKEND_FILE).read_text())["parity"]


@pytest.mark.parametrize("fmt", ["onnx-int8", "openvino-int8"])
def test_int8_export_passes_the_default_floor_and_records_its_figure(tiny, tmp_path, fmt):
    out = export(tiny, tmp_path / fmt, format=fmt)
    figures = _measured(out, fmt)
    assert figures["texts"] == len(PARITY_TEXTS) and figures["min_cosine"] >= 0.99
    assert figures["against"] == "torch fp32"


@pytest.mark.parametrize("fmt", ["onnx-int8", "openvino-int8"])
def test_floor_above_the_figure_refuses_and_below_writes(tiny, tmp_path, fmt, damaged):
    first = export(tiny, tmp_path / "any", format=fmt, min_cosine=0)  # 0: whatever the figure
    figures = _measured(first, fmt)
    assert 0 < figures["min_cosine"] < 0.999
    assert figures["min_cosine"] <= figures["mean_cosine"]
    above = (figures["min_cosine"] + 1) / 2
    with pytest.raises(UserError) as info:
        export(tiny, tmp_path / "refused", format=fmt, min_cosine=above)
    message = str(info.value)  # the figure of the last recipe tried (onnx-int8 falls back to another)
    figure = float(re.search(r"fp32 is ([0-9.]+) on 12 built-in sentences", message).group(1))
    assert figure < above and figure == pytest.approx(figures["min_cosine"], abs=0.01)
    assert f"below --min-cosine {above:g}" in message and "\n" not in message
    assert not (tmp_path / "refused").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".refused")]  # no staged folder left
    below = export(tiny, tmp_path / "written", format=fmt, min_cosine=figures["min_cosine"] - 1e-4)
    assert _measured(below, fmt)["min_cosine"] == pytest.approx(figures["min_cosine"], abs=1e-6)
    assert Encoder.from_pretrained(str(below), device="cpu").backend == fmt


def test_parity_is_the_cosine_against_torch(tiny):
    """The check's figure: 1.0 for the PyTorch body itself, lower for a body that changes the states."""
    enc = Encoder.from_pretrained(str(tiny), device="cpu")

    def torch_body(ids, mask):
        from unimae.llm import last_hidden_states

        return last_hidden_states(enc.model, ids, mask)

    assert parity(enc, torch_body)["min_cosine"] == pytest.approx(1.0, abs=1e-5)
    noisy = parity(enc, lambda ids, mask: torch_body(ids, mask) + 0.5 * (ids[..., None] % 3 - 1))
    assert noisy["min_cosine"] < 0.999
    assert enc.backend == "torch" and enc.runtime is None  # put back as it was


def test_cli_refusal_is_one_line_and_exit_2(tiny, tmp_path, capsys, damaged):
    out = tmp_path / "x"
    assert main(["export", str(tiny), "--format", "onnx-int8", "-o", str(out), "--min-cosine", "1"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]  # (not progress bars)
    assert len(errors) == 1 and errors[0].startswith("unimae export: error:")
    assert "below --min-cosine 1;" in errors[0]  # the option reached the check
    assert not out.exists()
    assert main(["export", str(tiny), "--format", "onnx-int8", "-o", str(out), "--min-cosine", "1.5"]) == 2
    assert "between 0 and 1" in capsys.readouterr().err


def test_onnx_export_leaves_the_model_in_eval_mode(tmp_path):
    """The parity check's PyTorch reference runs after the export: dropout must stay off (GPT-2 has it)."""
    from conftest import make_tiny_gpt2

    from unimae.encoding.backend_build import export_onnx

    enc = Encoder.from_pretrained(str(make_tiny_gpt2(tmp_path / "g")), device="cpu")
    export_onnx(enc.model, tmp_path / "model.onnx")
    assert not any(m.training for m in enc.model.modules())


def test_cache_build_refuses_an_int8_graph_below_the_floor_and_caches_nothing(tiny, monkeypatch):
    """``Encoder.from_pretrained(model, backend=int8)`` on a folder without that graph: built into the cache,
    checked the same way; below the default floor it is a one-line UserError and nothing is cached."""
    from unimae.encoding import backend_build
    from unimae.paths import cache_dir

    real = backend_build.parity
    monkeypatch.setattr(backend_build, "parity", lambda enc, body: {**real(enc, body), "min_cosine": 0.5})
    with pytest.raises(UserError, match=r"min cosine 0\.5000 .* \(below 0\.99\)") as refused:
        Encoder.from_pretrained(str(tiny), device="cpu", backend="openvino-int8")
    assert "\n" not in str(refused.value)
    assert not list((cache_dir() / "backends").rglob("openvino_model.xml"))  # not cached
    monkeypatch.setattr(backend_build, "parity", real)
    enc = Encoder.from_pretrained(str(tiny), device="cpu", backend="openvino-int8")
    (record,) = (cache_dir() / "backends").rglob(BACKEND_FILE)
    assert enc.backend == "openvino-int8" and json.loads(record.read_text())["parity"]["min_cosine"] >= 0.99


def test_quantizer_notes_stay_out_of_the_users_log(tmp_path, caplog):
    """ONNX Runtime's quantizer warns on the root logger (pre-processing, untyped tensors): dropped during an
    export's quantization, and only there."""
    import logging

    from onnxruntime.quantization import quantize_dynamic

    from unimae.encoding.backend_build import export_onnx, quantize_rest_dynamic
    from unimae.encoding.loading import load_causal_lm

    fp32 = export_onnx(load_causal_lm(str(make_tiny_llama(tmp_path / "l")))[0], tmp_path / "fp32.onnx")
    caplog.set_level(logging.WARNING)
    filters_before = list(logging.getLogger().filters)
    quantize_dynamic(str(fp32), str(tmp_path / "plain.onnx"))
    assert any("onnxruntime" in r.pathname for r in caplog.records)  # what the filter is for
    caplog.clear()
    quantize_rest_dynamic(fp32, tmp_path / "int8.onnx")
    assert not [r.getMessage() for r in caplog.records if "onnxruntime" in r.pathname]
    assert logging.getLogger().filters == filters_before  # the filter is gone again
