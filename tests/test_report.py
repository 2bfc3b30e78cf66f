"""`unimae report` on fixture result files, and the t-SNE figure pieces."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from table_text import squeeze

from unimae.evaluation.report import find_results, write_report
from unimae.evaluation.scale import scale_table

FIX = Path(__file__).parent / "fixtures" / "eval" / "results"


@pytest.fixture
def results(tmp_path) -> Path:
    root = tmp_path / "results"
    shutil.copytree(FIX, root)
    (root / "figures").mkdir()
    (root / "figures" / "tsne.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # only linked, never opened
    return root


def _row(text: str, label: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(f"| {label} |"))


def test_report_table_rows_columns_and_links(results, tmp_path):
    out = write_report(results, tmp_path / "RESULTS.md")
    text = squeeze(out.read_text())
    header = next(line for line in text.splitlines() if line.startswith("| model |"))
    for col in (
        "STS",
        "Classification",
        "Clustering",
        "PairClass.",
        "Reranking",
        "Retrieval",
        "Summarization",
        "Average",
        "PPL",
        "MC acc",
    ):
        assert col in header
    base = _row(text, "Base (mean)")
    assert "56.00" in base and "73.00" in base and "**64.50**" in base
    assert "59.60" in base and "47.5" in base  # lm-eval of the same model joined to its row
    assert "no offline data" in base  # summarization is not averaged over nothing
    assert "47.00" in _row(text, "UniMAE") and "steps=100, seed=0" in text
    minilm = _row(text, "all-MiniLM-L6-v2")
    assert minilm.rstrip().endswith("| - | - |")  # no lm-eval for the reference encoder
    assert text.index("| Base (mean) |") < text.index("| all-MiniLM-L6-v2 |")  # reference last
    assert "![tsne](results/figures/tsne.png)" in text
    assert "unimae eval smollm2-135m --benchmark offline --pooling mean" in text
    assert "unimae lm-eval runs/default/model" in text
    assert "Paris \\| the capital." in text  # generations side by side, table-safe


def test_report_is_deterministic_and_ordered_by_runs(results, tmp_path):
    a = squeeze(write_report(results, tmp_path / "a.md").read_text())
    b = squeeze(write_report(results, tmp_path / "b.md").read_text())
    assert a.replace("a.md", "") == b.replace("b.md", "")
    ordered = write_report(
        results, tmp_path / "c.md", runs=[str(results / "unimae"), str(results / "base-mean")]
    )
    text = squeeze(ordered.read_text())
    assert text.index("| UniMAE |") < text.index("| Base (mean) |") and "all-MiniLM" not in text


def test_report_cli_and_errors(results, tmp_path, capsys):
    from unimae.cli import main

    assert main(["report", str(results), "-o", str(tmp_path / "R.md")]) == 0
    assert (tmp_path / "R.md").read_text().startswith("# Results")
    assert main(["report", str(tmp_path / "empty_missing"), "-o", str(tmp_path / "X.md")]) == 2
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no summary.json"):
        find_results(tmp_path / "empty")
    broken = results / "unimae" / "offline" / "summary.json"
    broken.write_text(broken.read_text()[:200])  # a write cut short
    assert main(["report", str(results), "-o", str(tmp_path / "Y.md")]) == 2
    err = capsys.readouterr().err
    assert str(broken) in err and "Traceback" not in err and not (tmp_path / "Y.md").exists()


def test_summary_markdown_from_fixture():
    from unimae.evaluation.benchmark import summary_markdown
    from unimae.evaluation.results import BenchmarkSummary

    md = squeeze(summary_markdown(BenchmarkSummary.load(FIX / "base-mean" / "offline" / "summary.json")))
    assert "| LeeSTS | STS | 56.00 | cosine_spearman |" in md
    assert "| Summarization | 0 | no offline data |" in md and "Average over 2 tasks: 64.50" in md


def test_tsne_panels_png(tmp_path):
    from unimae.evaluation.tsne import plot_panels, tsne_2d

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (15, 8)) + 5, rng.normal(0, 1, (15, 8)) - 5])
    labels = ["a"] * 15 + ["b"] * 15
    pts = tsne_2d(x, seed=0)
    assert pts.shape == (30, 2)
    np.testing.assert_allclose(pts, tsne_2d(x, seed=0))  # deterministic
    out = plot_panels([("base", pts), ("unimae", pts)], labels, tmp_path / "t.png", title="test")
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_tsne_command_on_tiny_model(tiny_llama, tmp_path):
    from unimae.cli import main

    out = tmp_path / "tsne.png"
    assert (
        main(
            [
                "tsne",
                f"A={tiny_llama}@mean",
                f"B={tiny_llama}@eos",
                "--task",
                "MiniNewsgroupsClustering",
                "--n-points",
                "40",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_report_draws_fig3b_and_keeps_task_subsets_apart(results, tmp_path):
    import json

    sub = json.loads((results / "unimae" / "offline" / "summary.json").read_text())
    sub.update(label="sweep: mar0.2", subset=["LeeSTS"], tasks={"LeeSTS": sub["tasks"]["LeeSTS"]})
    (results / "sweep" / "mar0.2").mkdir(parents=True)
    (results / "sweep" / "mar0.2" / "summary.json").write_text(json.dumps(sub))
    text = squeeze(write_report(results, tmp_path / "R.md").read_text())
    full, _, subset = text.partition("## Embeddings and generation: `offline, 1-task subset` benchmark")
    assert subset and "Tasks of this subset: LeeSTS." in subset
    assert "| sweep: mar0.2 |" in subset and "| sweep: mar0.2 |" not in full
    assert "| UniMAE |" in full
    setup = text.split("## Models, steps and seeds")[1]
    assert "| sweep: mar0.2 (offline, 1-task subset) |" in setup and "| UniMAE (offline) |" in setup
    fig = results / "fig3b_lm_scores.png"
    assert (
        fig.read_bytes().startswith(b"\x89PNG") and "![fig3b_lm_scores](results/fig3b_lm_scores.png)" in text
    )


def test_report_checks_targets_from_the_files(results, tmp_path):
    text = squeeze(write_report(results, tmp_path / "R.md").read_text())
    section = text.split("## Against the targets")[1].split("\n## ")[0]
    # fixture: UniMAE (trained, objective unimae) average 67.50, Base (mean) 64.50; STS 55 against 56
    assert "UniMAE 67.50 vs best untrained row Base (mean) 64.50: **+3.00** points" in section
    assert "below an untrained pooling or MNTP: STS (55.00; above it: Base (mean) 56.00)" in section
    # lm-eval fixture: perplexity 47.0 against 59.6 (-21.1%), choice accuracy 47.0 against 47.5
    assert "perplexity 47.00 vs 59.60 (**-21.1%**), mean choice accuracy **-0.5** points" in section
    assert "all-MiniLM" not in section  # the reference encoder is not a baseline to beat
    assert "slowest evaluation" in section


def _copy_run(
    results: Path, src: str, dst: str, label: str, average: float, acc: float | None, rev=None, **train
):
    """A copy of fixture run ``src`` as ``dst``: another label, average, choice accuracy, training and weights
    (revision ``rev``, by default a new one)."""
    import json

    s = json.loads((results / src / "offline" / "summary.json").read_text())
    s["label"], s["average"] = label, average
    s["model_info"].update(
        model=f"runs/{dst}/model",
        revision=rev or f"{dst}-eos-512",
        training={**s["model_info"]["training"], **train},
    )
    (results / dst / "offline").mkdir(parents=True)
    (results / dst / "offline" / "summary.json").write_text(json.dumps(s))
    if acc is not None:
        r = json.loads((results / src / "lm-eval" / "lm_eval.json").read_text())
        r["label"], r["choice_accuracy"] = label, acc
        r["model_info"].update(model=f"runs/{dst}/model", training=s["model_info"]["training"])
        (results / dst / "lm-eval").mkdir(parents=True)
        (results / dst / "lm-eval" / "lm_eval.json").write_text(json.dumps(r))


def test_report_seed_table_and_fields_that_differ(results, tmp_path):
    _copy_run(results, "unimae", "unimae-seed7", "UniMAE, seed 7", 0.655, 0.40, seed=7)
    _copy_run(results, "unimae", "unimae-eos-off", "UniMAE, no EOS target", 0.70, None, mar_predict_eos=False)
    _copy_run(
        results, "unimae", "unimae-rerun", "UniMAE, rerun", 0.675, None, rev="abc123-eos-512"
    )  # counted once
    text = squeeze(write_report(results, tmp_path / "R.md").read_text())
    seeds = text.split("## Seeds")[1].split("\n## ")[0]
    rows = [line for line in seeds.splitlines() if line.startswith("| offline |")]
    # fixture UniMAE: seed 0, average 67.50, choice accuracy 47.0 (lm-eval); the single-seed variant has no row
    assert len(rows) == 1, rows
    assert "| 0, 7 | 67.50 / 65.50 | 66.50 |" in rows[0] and "47.0 / 40.0 | 43.5 |" in rows[0]
    assert "mar_predict_eos=None" in rows[0]  # named by the field that tells the configs apart
    setup = text.split("## Models, steps and seeds")[1]
    assert "seed=7, mar_predict_eos=None" not in setup and "mar_predict_eos=False" in setup


def _put(
    results: Path, src: str, dst: str, label: str, average: float | None = None, model: str | None = None
):
    """A copy of fixture result file ``src`` (relative to the fixture root) at ``dst``, relabelled."""
    import json

    d = json.loads((results / src).read_text())
    d["label"] = label
    if average is not None:
        d["average"] = average
    if model is not None:
        d["model_info"]["model"] = model
    (results / dst).parent.mkdir(parents=True, exist_ok=True)
    (results / dst).write_text(json.dumps(d))


def test_report_scale_table_rows_by_size_kept_out_of_the_main_tables(results, tmp_path):
    s, lm = "base-mean/offline/summary.json", "base/lm-eval/lm_eval.json"  # base: PPL 59.6, MC acc 47.5
    g = "scale/gemma3-270m"
    _put(results, s, f"{g}/base-pcot/offline/summary.json", "gemma pcot", 0.62, "gemma3-270m")
    _put(results, s, f"{g}/base-prompteol/offline/summary.json", "gemma prompteol", 0.60, "gemma3-270m")
    _put(results, lm, f"{g}/base/lm-eval/lm_eval.json", "gemma base", model="gemma3-270m")
    _put(results, s, f"{g}/mntp-s42/offline/summary.json", "gemma mntp", 0.61, "runs/g/mntp")
    _put(results, s, f"{g}/unimae-s42/offline/summary.json", "gemma unimae", 0.6525, "runs/g/unimae")
    _put(
        results,
        "unimae/lm-eval/lm_eval.json",
        f"{g}/unimae-s42/lm-eval/lm_eval.json",
        "gemma unimae",
        model="runs/g/unimae",
    )
    text = squeeze(write_report(results, tmp_path / "R.md").read_text())
    main = text.split("## Model sizes")[0]
    assert "gemma" not in main  # another base model: not a row of the main tables, nor a target check
    section = text.split("## Model sizes")[1].split("\n## ")[0]
    row = _row(section, "`gemma3-270m`")
    # pretended CoT 62.00, PromptEOL 60.00, MNTP 61.00, UniMAE 65.25: +3.25 over the best other
    assert "| 62.00 | 60.00 | 61.00 | 65.25 | +3.25 |" in row
    # unimae fixture lm-eval: perplexity 47.0, choice accuracy 47.0, against the base's 59.6 / 47.5; no MNTP lm-eval
    assert "59.60 / not run / 47.00 (-21.1%)" in row and "47.5 / not run / 47.0 (-0.5)" in row
    assert "`qwen2.5-coder-0.5b`" not in section  # no results: no row
    assert (
        "gemma3-270m/unimae-s42/offline/summary.json" in text.split("## Commands")[1]
    )  # listed with the rest
    runs = [str(results / "base-mean"), str(results / "unimae")]  # runs named without the scale folder
    text = squeeze(write_report(results, tmp_path / "R2.md", runs=runs).read_text())
    assert "| 62.00 | 60.00 | 61.00 | 65.25 | +3.25 |" in text.split("## Model sizes")[1]
    assert "gemma3-270m/unimae-s42/offline/summary.json" in text.split("## Commands")[1]


def test_scale_lead_over_the_baselines_measured_so_far_names_the_missing_one(results):
    s = "base-mean/offline/summary.json"
    q = "scale/qwen2.5-coder-0.5b"
    _put(results, s, f"{q}/base-pcot/offline/summary.json", "qwen pcot", 0.64, "qwen2.5-coder-0.5b")
    _put(results, s, f"{q}/base-prompteol/offline/summary.json", "qwen prompteol", 0.66, "qwen2.5-coder-0.5b")
    _put(results, s, f"{q}/unimae-s42/offline/summary.json", "qwen unimae", 0.65, "runs/q/unimae")
    row = _row(squeeze("\n".join(scale_table(results))), "`qwen2.5-coder-0.5b`")
    # UniMAE 65.00 against PromptEOL 66.00, the best measured; MNTP not run yet
    assert "| 64.00 | 66.00 | not run | 65.00 | -1.00 (MNTP not run) |" in row
    _put(results, s, f"{q}/mntp-s42/offline/summary.json", "qwen mntp", 0.67, "runs/q/mntp")
    row = _row(squeeze("\n".join(scale_table(results))), "`qwen2.5-coder-0.5b`")
    assert "| 64.00 | 66.00 | 67.00 | 65.00 | -2.00 |" in row


def test_report_shows_the_interval_beside_an_average_that_has_one(results, tmp_path):
    import json

    path = results / "unimae" / "offline" / "summary.json"
    data = json.loads(path.read_text())
    plain = _row(squeeze(write_report(results, tmp_path / "before.md").read_text()), "UniMAE")
    data["average_ci_low"], data["average_ci_high"] = data["average"] - 0.01, data["average"] + 0.02
    path.write_text(json.dumps(data))
    text = squeeze(write_report(results, tmp_path / "after.md").read_text())
    row = _row(text, "UniMAE")
    low, high = 100 * data["average_ci_low"], 100 * data["average_ci_high"]
    assert f"({low:.2f}-{high:.2f})" in row and row.replace(f" ({low:.2f}-{high:.2f})", "") == plain
    assert "95% bootstrap interval of the average" in text
    assert "(" not in _row(text, "Base (mean)").split("**")[2].split("|")[0]  # old results: as before
