"""The size study on offline-v2-test (``studies/margins.py``): the best training-free pooling per size, each
recipe's margin over it with a paired interval, ``results/scale/summary.json`` and RESULTS.md's table."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from margins import margin_records, margins_section, write_margins
from summaries import bootstrapped_summary
from table_text import squeeze

ITEMS = {"TaskA": np.random.default_rng(0).random(200), "TaskB": np.random.default_rng(1).random(300)}


def _put(results: Path, model: str, key: str, shift: float) -> None:
    """A v2-test summary whose item scores are the fixture's plus ``shift`` (so margins are exact)."""
    values = {name: v + shift for name, v in ITEMS.items()}
    path = results / "scale" / model / key / "offline-v2-test" / "summary.json"
    bootstrapped_summary(key, values, model=model, category="STS").save(path)


def test_margins_against_the_best_prompt_per_size_with_paired_intervals(results):
    g = "gemma3-270m"
    _put(results, g, "base-pcot", 0.0)
    _put(results, g, "base-prompteol", 0.02)  # the best training-free pooling
    _put(results, g, "base-tokenprepend", -0.01)
    _put(results, g, "unimae-s42", 0.05)
    _put(results, g, "unimae-s7", 0.01)
    _put(results, g, "d1-s42", 0.04)  # configs/distill.yaml's run folder
    shutil.copytree(results / "unimae" / "lm-eval", results / "scale" / g / "unimae-s42" / "lm-eval")
    shutil.copytree(results / "base" / "lm-eval", results / "scale" / g / "base" / "lm-eval")
    records = {(r.recipe, r.seed): r for r in margin_records(results)}
    assert set(records) == {("default", 42), ("default", 7), ("distill", 42)}  # no MNTP result: no record
    assert records["distill", 42].margin == pytest.approx(0.02)
    r42, r7 = records["default", 42], records["default", 7]
    assert r42.best_baseline_name == "PromptEOL" and r42.margin == pytest.approx(0.03)
    # a constant shift of every item: the paired interval is that shift exactly
    assert r42.margin_ci_low == pytest.approx(0.03) and r42.margin_ci_high == pytest.approx(0.03)
    assert r7.margin == pytest.approx(-0.01) and r7.margin_ci_high == pytest.approx(-0.01)
    # the lm-eval fixtures: perplexity 47.0 (UniMAE) against 59.6 (base); seed 7 has none
    assert (r42.ppl, r42.ppl_base) == (47.0, 59.6) and r7.ppl is None and r7.ppl_base == 59.6
    path = write_margins(results)
    assert path == results / "scale" / "summary.json"
    saved = json.loads(path.read_text())
    assert len(saved) == 3 and {"model", "recipe", "benchmark", "average", "best_baseline", "margin",
        "margin_ci_low", "margin_ci_high", "ppl", "ppl_base", "mc_acc", "mc_acc_base"} <= set(saved[0])  # fmt: skip
    text = squeeze("\n".join(margins_section(results)))
    assert "| `gemma3-270m` | default | 42 |" in text and "| +3.00 [+3.00, +3.00] | lead |" in text
    assert "| -1.00 [-1.00, -1.00] | trails |" in text and "47.00 vs 59.60 (-21.1%)" in text
    # per category (the fixture's tasks are all STS): the paired difference of that category's mean
    assert "| model | recipe | seed | STS |" in text
    assert "| `gemma3-270m` | distill | 42 | +2.00 [+2.00, +2.00] |" in text


def test_a_run_scored_on_part_of_the_set_is_paired_on_its_tasks(results):
    g = "gemma3-270m"
    _put(results, g, "base-prompteol", 0.02)
    _put(results, g, "unimae-s7", 0.01)
    path = results / "scale" / g / "d1-s7" / "offline-v2-test-registry" / "summary.json"
    bootstrapped_summary("d1-s7", {"TaskA": ITEMS["TaskA"] + 0.04}, model=g, category="STS").save(path)
    assert {(r.recipe, r.seed) for r in margin_records(results)} == {("default", 7)}  # not a full record
    text = squeeze("\n".join(margins_section(results)))
    assert "### Scored on part of `offline-v2-test` only" in text
    assert "| `gemma3-270m` | distill | 7 | TaskA " in text
    assert "| +3.00 [+3.00, +3.00] (lead) | +2.00 [+2.00, +2.00] (lead) | PromptEOL |" in text


def test_a_partial_run_is_paired_with_the_defaults_partial_run_when_that_is_all_there_is(results):
    g = "gemma3-270m"
    _put(results, g, "base-pcot", 0.02)
    for key, shift in (("unimae-s42", 0.0), ("d1-s42", 0.05)):
        path = results / "scale" / g / key / "offline-v2-test-registry" / "summary.json"
        bootstrapped_summary(key, {"TaskA": ITEMS["TaskA"] + shift}, model=g, category="STS").save(path)
    text = squeeze("\n".join(margins_section(results)))
    assert (
        "| `gemma3-270m` | default | 42 | TaskA 5" in text and "| - | -2.00 [-2.00, -2.00] (trails) |" in text
    )
    assert "| +5.00 [+5.00, +5.00] (lead) | +3.00 [+3.00, +3.00] (lead) | pretended CoT |" in text


def test_no_v2_results_no_section_and_no_file(results):
    assert margins_section(results) == [] and write_margins(results) is None
    assert not (results / "scale" / "summary.json").exists()


def test_results_md_gets_the_section_and_the_records_file_is_not_a_result(results, tmp_path):
    import results as study

    _put(results, "smollm2-135m", "base-pcot", 0.0)
    _put(results, "smollm2-135m", "mntp-s42", 0.01)
    text = study.write_results(str(results), str(tmp_path / "R.md")).read_text()
    assert "## Model sizes on `offline-v2-test`" in text
    assert (results / "scale" / "summary.json").is_file()
    study.write_results(str(results), str(tmp_path / "R2.md"))  # the records file is not read as a result
    assert (tmp_path / "R2.md").read_text() == text


def test_readout_table_from_complete_and_partial_readings(results):
    from readout import readout_section

    folder = results / "readout" / "offline-v2-dev"
    folder.mkdir(parents=True)
    scores = {
        "last": {
            "raw": {"A": {"score": 0.5}, "B": {"score": 0.7}},
            "l2": {"A": {"score": 0.6}, "B": {"score": 0.8}},
        }
    }
    (folder / "u.json").write_text(json.dumps({"label": "U", "scores": scores, "complete": True}))
    part = {"last": {"raw": {"A": {"score": 0.4}}}}
    (folder / "p.partial.json").write_text(json.dumps({"label": "P", "scores": part, "complete": False}))
    text = squeeze("\n".join(readout_section(results)))
    assert "| layer / post-processing | U | P (1 tasks so far) |" in text
    assert "| last / raw | 60.00 | 40.00 |" in text and "| last / l2 | 70.00 | - |" in text
