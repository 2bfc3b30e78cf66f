"""lm-eval scoring: choice log-likelihoods on a hand-made bigram model with known answers, perplexity,
BIG-bench formatting, and `unimae lm-eval` end to end on a tiny model."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from table_text import squeeze

from unimae.evaluation import lm_eval
from unimae.evaluation.lm_eval import ChoiceItem, choice_accuracy, continuation_logprobs, perplexity
from unimae.evaluation.results import ChoiceScore, LmEvalResult

FIX = Path(__file__).parent / "fixtures" / "eval" / "bigbench"


class Bigram(torch.nn.Module):
    """A causal LM whose next-token logits depend only on the current token: ``logits = table[ids]``."""

    def __init__(self, vocab: int):
        super().__init__()
        self.table = torch.nn.Parameter(torch.zeros(vocab, vocab))

    def forward(self, input_ids, attention_mask=None, use_cache=False):
        return SimpleNamespace(logits=self.table[input_ids])

    def set(self, tok, prev: str, nxt: str, logit: float) -> None:
        with torch.no_grad():
            self.table[tok.convert_tokens_to_ids(prev), tok.convert_tokens_to_ids(nxt)] = logit

    def reference_logprob(self, ids: list[int], start: int) -> float:
        """Obviously-correct slow reference: sum of log p(ids[t] | ids[t-1]) for t >= start."""
        lp = torch.log_softmax(self.table.detach(), dim=-1)
        return float(sum(lp[ids[t - 1], ids[t]] for t in range(start, len(ids))))


@pytest.fixture
def tok(tiny_llama):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_llama)


def test_uniform_model_known_values(tok):
    model = Bigram(len(tok))
    V = len(tok)
    ((lp, n),) = continuation_logprobs(model, tok, [("the cat", " eats the dog")])
    assert n == 3 and lp == pytest.approx(-3 * math.log(V), rel=1e-6)
    ppl = perplexity(model, tok, ["the cat runs .", "a dog ."])
    assert ppl.perplexity == pytest.approx(V, rel=1e-5)  # every token has probability 1/V
    assert ppl.tokens == 4 + 3  # BOS is never predicted; every word and "." is


def test_choice_scoring_sum_versus_mean(tok):
    model = Bigram(len(tok))
    # after "cat": "runs" is likely; "eats the dog" is a chain of fairly likely steps
    model.set(tok, "cat", "runs", 4.0)
    model.set(tok, "cat", "eats", 3.0)
    model.set(tok, "eats", "the", 6.0)
    model.set(tok, "the", "dog", 6.0)
    item = ChoiceItem("the cat", [" eats the dog", " runs"], answer=1)
    scores = continuation_logprobs(model, tok, [(item.prompt, c) for c in item.choices])
    for (lp, n), choice in zip(scores, item.choices, strict=True):
        ids = tok("the cat").input_ids + tok(choice, add_special_tokens=False).input_ids
        assert lp == pytest.approx(model.reference_logprob(ids, len(ids) - n), rel=1e-5)
    (lp_long, n_long), (lp_short, _) = scores
    assert lp_short > lp_long and lp_long / n_long > lp_short  # the sum prefers "runs", the mean the long one
    res = choice_accuracy(model, tok, [item])
    assert res == ChoiceScore(acc=1.0, acc_norm=0.0, n=1, chance=0.5)


def test_scores_do_not_depend_on_batching(tiny_llama):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    tok = AutoTokenizer.from_pretrained(tiny_llama)
    pairs = [("the cat", " runs ."), ("a dog eats fish in the house and", " sings"), ("we", " love music")]
    one = continuation_logprobs(model, tok, pairs, batch_size=1)
    many = continuation_logprobs(model, tok, pairs, batch_size=8)
    assert [n for _, n in one] == [2, 1, 2]
    assert [lp for lp, _ in many] == pytest.approx([lp for lp, _ in one], abs=1e-4)
    texts = ["the cat runs .", "a dog eats fish in the house ."]
    assert perplexity(model, tok, texts, 1).perplexity == pytest.approx(
        perplexity(model, tok, texts, 8).perplexity
    )


def test_bigbench_items_format_and_seed():
    items = lm_eval.bigbench_items(FIX / "mc.json", n=10, name="mc")
    assert len(items) == 3
    first = items[0]
    assert first.prompt == "Answer the question.\n\nQ: What colour is the sky?\nA: "
    assert first.choices == ["blue", "green"] and first.answer == 0
    assert items[1].choices[items[1].answer] == "four"
    two = lm_eval.bigbench_items(FIX / "mc.json", n=2, name="mc")
    assert [i.prompt for i in two] == [
        i.prompt for i in lm_eval.bigbench_items(FIX / "mc.json", n=2, name="mc")
    ]


def test_run_lm_eval_end_to_end(tiny_llama, tmp_path, monkeypatch):
    monkeypatch.setattr(lm_eval, "data_file", lambda source, rel: FIX / "mc.json")
    monkeypatch.setattr(
        lm_eval, "heldout_sample", lambda n, seed=0: ["the cat runs .", "a dog eats fish ."][:n]
    )
    kw = dict(tasks=["social_iqa", "strategyqa"], n_examples=3, n_sentences=2, max_new_tokens=4)
    result = lm_eval.run_lm_eval(str(tiny_llama), tmp_path / "a", **kw)
    lm_eval.run_lm_eval(str(tiny_llama), tmp_path / "b", **kw)
    assert result.path == tmp_path / "a" / "lm_eval.json"
    assert LmEvalResult.load(result.path) == result  # the file holds the returned record
    assert "| social_iqa |" in squeeze(lm_eval.lm_eval_markdown(result))
    a = json.loads((tmp_path / "a" / "lm_eval.json").read_text())
    b = json.loads((tmp_path / "b" / "lm_eval.json").read_text())
    for r in (a, b):  # timings differ between runs, scores must not
        r["perplexity"].pop("seconds")
        for m in r["multiple_choice"].values():
            m.pop("seconds")
    for key in ("perplexity", "multiple_choice", "choice_accuracy", "generations"):
        assert a[key] == b[key]
    assert set(a["multiple_choice"]) == {"social_iqa", "strategyqa"}
    assert a["multiple_choice"]["social_iqa"]["n"] == 3 and a["perplexity"]["texts"] == 2
    assert len(a["generations"]) == len(lm_eval.GENERATION_PROMPTS)
    assert a["command"].startswith("unimae lm-eval")


def test_unknown_task_is_an_error(tiny_llama):
    with pytest.raises(ValueError, match="unknown multiple-choice task"):
        lm_eval.run_lm_eval(str(tiny_llama), tasks=["nope"])
