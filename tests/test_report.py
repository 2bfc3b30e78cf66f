"""`unimae report` (any result folders) on fixture result files, and the t-SNE figure pieces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from table_text import squeeze

from unimae.evaluation.report import find_results, write_report

FIX = Path(__file__).parent / "fixtures" / "eval" / "results"


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


def test_report_keeps_task_subsets_apart(results, tmp_path):
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
    assert not (results / "fig3b_lm_scores.png").exists()  # a study's figure: not drawn here


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


def test_report_sections_take_a_study_section_in_place(results, tmp_path):
    from unimae.evaluation.report import insert_after, render_report, report_sections

    summaries, lm, figures = find_results(results)
    sections = report_sections(summaries, lm, figures, tmp_path)
    assert list(sections)[0] == "title" and list(sections)[-1] == "commands"
    written = write_report(results, tmp_path / "R.md").read_text()
    assert render_report(sections) == written and "Generated by `unimae report`" in written
    assert "## Against the targets" not in written and "## Model sizes" not in written  # studies' own
    mine = insert_after(sections, "seeds", {"mine": ["## Mine", "", "text", ""]})
    text = render_report(mine)
    assert text.index("## Per task") < text.index("## Mine") < text.index("## Is generation kept?")
    assert text.replace("## Mine\n\ntext\n\n", "") == written
    with pytest.raises(KeyError, match="no section 'nope'"):
        insert_after(sections, "nope", {})
