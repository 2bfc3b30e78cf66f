"""``studies/perplexity.py``: the held-out perplexity of ``unimae lm-eval``, alone (no BIG-bench file)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from perplexity import main

from unimae.evaluation import lm_eval

FIX = Path(__file__).parent / "fixtures" / "eval" / "bigbench"


def test_the_figure_is_lm_evals_and_is_written_with_its_command(tiny_llama, tmp_path, monkeypatch):
    monkeypatch.setattr(
        lm_eval, "heldout_sample", lambda n, seed=0: ["the cat runs .", "a dog eats fish ."][:n]
    )
    monkeypatch.setattr(lm_eval, "data_file", lambda source, rel: FIX / "mc.json")
    full = lm_eval.run_lm_eval(
        str(tiny_llama), tmp_path / "lm", tasks=["social_iqa"], n_examples=2, n_sentences=2
    )
    out = tmp_path / "ppl.json"
    main([str(tiny_llama), "--out", str(out), "--n-sentences", "2", "--label", "tiny"])
    record = json.loads(out.read_text())
    assert record["perplexity"]["perplexity"] == pytest.approx(full.perplexity.perplexity, rel=1e-6)
    assert record["perplexity"]["tokens"] == full.perplexity.tokens
    assert record["label"] == "tiny" and record["command"].startswith("python studies/perplexity.py ")
