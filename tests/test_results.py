"""Typed result records: the committed result files load as they are, round-trip, and a broken file is a
clear error naming it; no import cycle inside ``unimae.evaluation``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unimae.errors import UserError
from unimae.evaluation.results import BenchmarkSummary, LmEvalResult, ModelInfo, ResultFileError

ROOT = Path(__file__).resolve().parents[1]
FIX = Path(__file__).parent / "fixtures" / "eval" / "results"
COMMITTED = ROOT / "results"


@pytest.mark.skipif(not COMMITTED.is_dir(), reason="no committed results/ in this checkout")
@pytest.mark.parametrize(
    ("name", "record"), [("summary.json", BenchmarkSummary), ("lm_eval.json", LmEvalResult)]
)
def test_committed_result_files_load_and_write_back_unchanged(name, record):
    files = sorted(COMMITTED.rglob(name))
    assert files
    for path in files:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if record is BenchmarkSummary:
            raw.setdefault("subset", None)  # files written before task subsets existed
        loaded = record.load(path)
        assert loaded.path == path and loaded.to_dict() == raw, path


def test_save_load_round_trip_is_atomic(tmp_path):
    summary = BenchmarkSummary.load(FIX / "unimae" / "offline" / "summary.json")
    assert summary.model_info.training["steps"] == 100 and summary.tasks["LeeSTS"].category == "STS"
    out = summary.save(tmp_path / "new" / "summary.json")
    assert out == summary.path and BenchmarkSummary.load(out) == summary
    assert [p.name for p in out.parent.iterdir()] == ["summary.json"]  # no temporary file left behind
    text = out.read_text(encoding="utf-8")
    assert text.endswith("}\n") and '\n  "label": "UniMAE",' in text  # indent 2, as before
    lm = LmEvalResult.load(FIX / "base" / "lm-eval" / "lm_eval.json")
    assert LmEvalResult.load(lm.save(tmp_path / "lm.json")) == lm
    assert "settings" not in lm.to_dict()  # optional fields a file lacks are not invented


def _broken(tmp_path, edit) -> Path:
    data = json.loads((FIX / "unimae" / "offline" / "summary.json").read_text())
    path = tmp_path / "summary.json"
    path.write_text(edit(data) if callable(edit) else edit)
    return path


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ('{"label": "UniMAE", "bench', "broken JSON"),
        ("", "broken JSON"),
        ("[1, 2]", "expected an object, got list"),
        (lambda d: json.dumps({k: v for k, v in d.items() if k != "average"}), "missing field 'average'"),
        (lambda d: json.dumps({**d, "averag": 1}), "unknown field(s) ['averag']"),
        (lambda d: json.dumps({**d, "seconds": "12 s"}), "seconds: expected float, got str '12 s'"),
        (lambda d: json.dumps({**d, "seconds": True}), "seconds: expected float, got bool"),
        (
            lambda d: json.dumps({**d, "tasks": {"LeeSTS": {**d["tasks"]["LeeSTS"], "score": None}}}),
            "tasks.LeeSTS.score: expected float, got NoneType",
        ),
        (lambda d: json.dumps({**d, "model_info": {"model": "m"}}), "model_info: missing field 'revision'"),
        (lambda d: json.dumps({**d, "subset": "LeeSTS"}), "subset: expected a list"),
    ],
)
def test_broken_result_file_names_the_file_and_field(tmp_path, edit, message):
    path = _broken(tmp_path, edit)
    with pytest.raises(ResultFileError) as err:
        BenchmarkSummary.load(path)
    assert str(err.value).startswith(f"{path}: not a valid summary.json file: ")
    assert message in str(err.value)
    assert isinstance(err.value, UserError)  # one clear line at the command line


def test_model_kind_is_defined_once():
    assert ModelInfo(model="all-MiniLM-L6-v2", revision="r").kind == "reference"
    assert ModelInfo(model="smollm2-135m", revision="r").kind == "untrained"
    assert ModelInfo(model="m", revision="r", training={"objective": "mntp"}).kind == "mntp"
    assert ModelInfo(model="m", revision="r", training={"steps": 1}).kind == "unimae"  # before objectives
