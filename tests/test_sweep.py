"""`python studies/sweep.py` on a tiny model: points, the shared "both" run, resumption, the task subset,
Figure 3(a), and its command line (declared from ``run_sweep`` like ``unimae``'s commands)."""

from __future__ import annotations

import functools
import json

import pytest
import sweep
import yaml
from sweep import plot_mask_ratio, run_sweep, sweep_points

from unimae.config_names import flat_names


@pytest.fixture
def config(tiny_llama, corpus_file, tmp_path):
    path = tmp_path / "tiny.yaml"
    cfg = dict(
        model=str(tiny_llama),
        data=str(corpus_file),
        steps=2,
        batch_size=4,
        max_length=16,
        save_every=2,
        warmup_steps=1,
        mar_mask_ratio=0.5,
    )
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_points_share_the_both_run_with_the_configs_ratio(config):
    points = {p.name: p for p in sweep_points(config, "s", ratios=(0.0, 0.5), variants=("mar-only", "both"))}
    assert list(points) == ["mar0", "mar0.5", "mar-only", "both"]
    assert points["both"].run_dir == points["mar0.5"].run_dir
    assert points["mar-only"].overrides == {"mrc_weight": 0.0}
    alone = {p.name: p for p in sweep_points(config, "s", ratios=(0.2,), variants=("both",))}
    assert alone["both"].run_dir.name == "both"  # 0.5 not swept: "both" is its own run
    with pytest.raises(ValueError, match="unknown variant"):
        sweep_points(config, "s", variants=("neither",))


def test_sweep_trains_evaluates_resumes_and_plots(config, tmp_path, monkeypatch):
    kw = dict(
        ratios=(0.0, 0.5),
        variants=("mrc-only", "both"),
        tasks=["LeeSTS"],
        runs_root=str(tmp_path / "runs"),
        results_root=str(tmp_path / "results"),
    )
    points = run_sweep(config, "s", **kw)
    by = {p.name: p for p in points}
    assert len({p.run_dir for p in points}) == 3  # "both" is the 0.5 run
    for p in points:
        assert set(p.summary.tasks) == {"LeeSTS"} and p.summary.subset == ["LeeSTS"]
        assert -1 <= p.summary.average <= 1
    trained = yaml.safe_load((by["mrc-only"].run_dir / "config.yaml").read_text())
    assert trained["objective"]["alpha"] == 0.0 and trained["objective"]["mar_mask_ratio"] == 0.5
    mar0 = yaml.safe_load((by["mar0"].run_dir / "config.yaml").read_text())
    assert mar0["objective"]["mar_mask_ratio"] == 0.0
    assert "--tasks LeeSTS" in by["mar0"].summary.command
    # the run's whole config is recorded, minus where it wrote
    recorded = by["mrc-only"].summary.model_info.training  # a flat record, under the older flat names
    assert recorded == {
        k: v
        for k, v in flat_names(trained).items()
        if k not in ("output_dir", "save_every", "log_every", "export")
    }
    assert "mar_predict_eos" in recorded and "output_dir" not in recorded

    # a second call finds every point finished: nothing is trained or evaluated again
    def refuse(*a, **k):
        raise AssertionError("finished point redone")

    monkeypatch.setattr("unimae.pipeline.train_and_export", refuse)
    monkeypatch.setattr("unimae.evaluation.benchmark.evaluate_model", refuse)
    again = run_sweep(config, "s", **kw)
    assert [p.summary for p in again] == [p.summary for p in points]

    png = plot_mask_ratio(again, tmp_path / "fig.png")
    assert png.read_bytes().startswith(b"\x89PNG")


def _fake_sweep(monkeypatch) -> dict:
    """Stand-ins for the sweep and its figure; returns the keyword arguments the sweep was called with."""
    seen = {}

    @functools.wraps(sweep.run_sweep)  # the command line is declared from run_sweep's signature
    def fake_run(**kw):
        seen.update(kw)
        return []

    monkeypatch.setattr(sweep, "run_sweep", fake_run)
    monkeypatch.setattr(sweep, "plot_mask_ratio", lambda points, path: path)
    return seen


def test_sweep_cli_passes_tasks_and_overrides(monkeypatch, tmp_path):
    seen = _fake_sweep(monkeypatch)
    monkeypatch.chdir(tmp_path)
    args = ["--name", "x", "--ratios", "0.2", "--tasks", "LeeSTS", "--threads", "1", "steps=5"]
    assert sweep.main(args) == 0
    assert seen["tasks"] == ["LeeSTS"] and seen["ratios"] == [0.2] and seen["overrides"] == {"steps": 5}
    assert json.dumps(seen["variants"])  # the defaults pass through


def test_sweep_overrides_are_typed_by_the_config(monkeypatch, tmp_path):
    seen = _fake_sweep(monkeypatch)
    argv = ["--config", "c.yaml", "--ratios", "[0.2, 0.5]", "--tasks", "LeeSTS", "Other"]
    assert sweep.main([*argv, "--results-root", str(tmp_path), "steps=3", "lora=true"]) == 0
    assert seen["overrides"] == {"steps": 3, "lora": True}
    assert list(seen["ratios"]) == [0.2, 0.5] and seen["tasks"] == ["LeeSTS", "Other"]


def test_sweep_bad_value_is_one_line(capsys):
    assert sweep.main(["--ratios", "many"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python studies/sweep.py: error: --ratios") and err.count("\n") == 1
