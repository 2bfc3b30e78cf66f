"""Typed result records: the committed result files load as they are, round-trip, and a broken file is a
clear error naming it; no import cycle inside ``unimae.evaluation``."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from unimae.errors import UserError
from unimae.evaluation.results import BenchmarkSummary, LmEvalResult, ModelInfo, ResultFileError

ROOT = Path(__file__).resolve().parents[1]
FIX = Path(__file__).parent / "fixtures" / "eval" / "results"
COMMITTED = ROOT / "results"


RECORDS = {"summary.json": BenchmarkSummary, "lm_eval.json": LmEvalResult}
# written by studies/, not by the library: the size study's margins (a list of records) and the readout study
STUDY_FILES = {COMMITTED / "scale" / "summary.json"}
STUDY_FOLDERS = {"readout"}
STUDY_NAMES = {"perplexity.json"}  # studies/perplexity.py: lm-eval's held-out perplexity alone
COMMITTED_RECORDS = sorted(p for name in RECORDS for p in COMMITTED.rglob(name) if p not in STUDY_FILES)


def test_results_holds_the_committed_records():
    """Guards the test below against passing over nothing: every study's summary.json and lm_eval.json."""
    assert sum(p.name == "summary.json" for p in COMMITTED_RECORDS) >= 100
    assert sum(p.name == "lm_eval.json" for p in COMMITTED_RECORDS) >= 10


@pytest.mark.parametrize("path", COMMITTED_RECORDS, ids=lambda p: str(p.relative_to(COMMITTED)))
def test_every_committed_result_file_loads_and_saves_back_byte_identical(tmp_path, path):
    loaded = RECORDS[path.name].load(path)
    assert loaded.path == path and loaded.to_dict() == json.loads(path.read_text(encoding="utf-8"))
    copy = loaded.save(tmp_path / path.name)
    assert copy.read_bytes() == path.read_bytes(), f"{path} does not save back as it is"


def test_the_other_committed_json_files_are_mteb_s_own():
    """unimae reads no other JSON record from results/: the rest are mteb's task results, model metadata
    and run settings under an ``mteb/`` folder (mteb reads them back for ``eval --resume``). A new record
    kind written outside ``mteb/`` fails here until it joins ``RECORDS``."""
    others = [p for p in COMMITTED.rglob("*.json*") if p.name not in RECORDS]
    assert len(others) > 100
    parts = {p: p.relative_to(COMMITTED).parts for p in others}
    outside = [
        p
        for p in others
        if "mteb" not in parts[p] and parts[p][0] not in STUDY_FOLDERS and p.name not in STUDY_NAMES
    ]
    assert not outside, f"JSON files that are not summary.json / lm_eval.json outside mteb/: {outside[:5]}"


def test_the_size_study_records_are_margin_records():
    from margins import MarginRecord

    path = COMMITTED / "scale" / "summary.json"
    if not path.is_file():
        pytest.skip("no size-study records committed yet")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data and all(asdict(MarginRecord(**d)) == d for d in data)


def test_numbers_keep_their_json_type_and_absent_fields_stay_absent(tmp_path):
    data = json.loads((FIX / "unimae" / "offline" / "summary.json").read_text())
    data.pop("subset", None)  # as files written before task subsets existed
    data["seconds"], data["tasks"]["LeeSTS"]["score"] = 12, 1  # ints where floats are expected
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    summary = BenchmarkSummary.load(path)
    assert summary.subset is None and type(summary.seconds) is int and summary.tasks["LeeSTS"].score == 1
    assert summary.save(tmp_path / "again.json").read_bytes() == path.read_bytes()
    fresh = BenchmarkSummary(**{**data, "model_info": summary.model_info, "tasks": summary.tasks})
    assert fresh.to_dict()["subset"] is None  # a record built in code writes every non-optional field


def test_unknown_keys_of_a_newer_version_are_ignored(tmp_path):
    """Every result record ignores keys it does not know (results.py says why): a newer file still loads."""
    fixture = FIX / "unimae" / "offline" / "summary.json"
    data = json.loads(fixture.read_text())
    data["new_field"] = 1
    data["model_info"]["new_info"] = "x"
    data["tasks"]["LeeSTS"]["new_score"] = 0.5
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(data))
    assert BenchmarkSummary.load(path) == BenchmarkSummary.load(fixture)
    lm = json.loads((FIX / "base" / "lm-eval" / "lm_eval.json").read_text())
    lm["perplexity"]["new"] = 1
    (tmp_path / "lm_eval.json").write_text(json.dumps({**lm, "new": {"a": 1}}))
    assert LmEvalResult.load(tmp_path / "lm_eval.json") == LmEvalResult.load(
        FIX / "base" / "lm-eval" / "lm_eval.json"
    )


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
        (lambda d: json.dumps({**d, "seconds": "12 s"}), "seconds: expected float, got str '12 s'"),
        (lambda d: json.dumps({**d, "seconds": True}), "seconds: expected float, got bool"),
        (
            lambda d: json.dumps({**d, "tasks": {"LeeSTS": {**d["tasks"]["LeeSTS"], "score": None}}}),
            "tasks.LeeSTS.score: expected float, got NoneType",
        ),
        (lambda d: json.dumps({**d, "model_info": {"model": "m"}}), "model_info: missing field 'revision'"),
        (
            lambda d: json.dumps({**d, "subset": "LeeSTS"}),
            "subset: input should be a valid list, got 'LeeSTS'",
        ),
        (
            lambda d: json.dumps({**d, "tasks": {"SICK-R": {**d["tasks"]["LeeSTS"], "n_items": 2.5}}}),
            "tasks['SICK-R'].n_items: input should be a valid integer, got 2.5",
        ),
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


def test_the_perplexity_study_files_hold_lm_evals_record_and_their_command():
    from unimae.evaluation.results import Perplexity

    files = sorted(COMMITTED.rglob("perplexity.json"))
    assert files
    for path in files:
        data = json.loads(path.read_text(encoding="utf-8"))
        assert asdict(Perplexity(**data["perplexity"])) == data["perplexity"], path
        assert data["command"].startswith("python studies/perplexity.py "), path
