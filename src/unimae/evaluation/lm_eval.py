"""``unimae lm-eval``: is generation kept? Perplexity, multiple-choice accuracy and greedy generations.

- Perplexity on held-out Wikipedia sentences (``wiki_sentences("heldout")``, never trained on):
  ``exp(total NLL / total predicted tokens)`` with the model's plain causal forward, one sentence per row,
  the tokenizer's usual BOS (if it adds one) and no EOS appended. A fixed, seeded sample of sentences.
- Multiple choice (BIG-bench ``task.json`` files): each choice is scored by the summed log-likelihood of
  its tokens after the prompt; the prediction is the best choice. ``acc`` uses the sum, ``acc_norm`` the
  mean per token (reported too, as length matters for multi-token choices). A fixed, seeded sample of
  examples per task; a tie counts as wrong unless the correct choice is the first of the tied.
- Greedy generations for a few fixed prompts (chat template when the tokenizer has one).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from unimae.data.prepare import data_file
from unimae.errors import UserError
from unimae.evaluation.offline_data import best_choice, read_bigbench_examples, rng_for
from unimae.evaluation.results import (
    ChoiceScore,
    Generation,
    LmEvalResult,
    LmEvalSettings,
    ModelInfo,
    Perplexity,
    package_versions,
    run_info,
)
from unimae.evaluation.results import lm_eval_markdown as lm_eval_markdown  # its home before results
from unimae.objective.losses import next_token_targets

# task name -> file under the prepared bigbench folder
MC_TASKS = {
    "social_iqa": "social_iqa/task.json",
    "strategyqa": "strategyqa/task.json",
    "winowhy": "winowhy/task.json",
    "logical_deduction_three_objects": "logical_deduction/three_objects/task.json",
    "truthful_qa_mc": "truthful_qa/task_mc.json",
}
DEFAULT_MC_TASKS = ("social_iqa", "strategyqa", "winowhy", "logical_deduction_three_objects")
GENERATION_PROMPTS = (
    "What is the capital of France?",
    "Write one sentence about the ocean.",
    "List three colours.",
    "Explain in one sentence what a sentence embedding is.",
    "Continue the story: The old lighthouse keeper opened the door and",
)


@dataclass
class ChoiceItem:
    """One multiple-choice question: the prompt, the choice continuations, the index of the right one."""

    prompt: str
    choices: list[str]
    answer: int


# --- BIG-bench formatting -----------------------------------------------------------------------------


def bigbench_items(path: Path, n: int, name: str, seed: int = 0) -> list[ChoiceItem]:
    """A seeded sample of ``n`` examples of a BIG-bench multiple-choice task, formatted zero-shot the way
    BIG-bench does: ``task_prefix + input_prefix + input + output_prefix``, then the choice."""
    import json

    task = json.loads(Path(path).read_text(encoding="utf-8"))
    examples = read_bigbench_examples(path)
    task_prefix = task.get("task_prefix", "")
    in_prefix = task.get("example_input_prefix", "\nQ: ")
    out_prefix = task.get("example_output_prefix", "\nA: ")
    choice_prefix = task.get("choice_prefix", "\n  choice: ")
    append_choices = task.get("append_choices_to_input", True)
    idx = sorted(rng_for(name, seed).sample(range(len(examples)), min(n, len(examples))))
    items = []
    for i in idx:
        e = examples[i]
        choices = list(e["target_scores"])
        text = e["input"]
        if append_choices:
            text += "".join(choice_prefix + c for c in choices)
        prompt = (task_prefix + in_prefix + text + out_prefix).lstrip("\n")
        items.append(ChoiceItem(prompt, choices, choices.index(best_choice(e["target_scores"]))))
    return items


# --- scoring --------------------------------------------------------------------------------------------


def _split_context(prompt: str, continuation: str) -> tuple[str, str]:
    """Move trailing spaces of the prompt onto the continuation (how BPE tokenizers see ' word')."""
    stripped = prompt.rstrip(" ")
    return stripped, prompt[len(stripped) :] + continuation


def _prompt_ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text).input_ids  # with the tokenizer's own BOS, if it adds one


@torch.inference_mode()
def continuation_logprobs(
    model,
    tokenizer,
    pairs: Sequence[tuple[str, str]],
    batch_size: int = 16,
    device=None,
    desc: str | None = None,
) -> list[tuple[float, int]]:
    """(sum of log p(continuation tokens | prompt), number of continuation tokens) for each (prompt, cont).

    The prompt is tokenized with the tokenizer's special tokens, the continuation without; they are
    concatenated so that each continuation token is predicted from everything before it.
    """
    device = device or next(model.parameters()).device
    seqs = []
    for prompt, cont in pairs:
        ctx, cont = _split_context(prompt, cont)
        p_ids = _prompt_ids(tokenizer, ctx) if ctx else []
        c_ids = tokenizer(cont, add_special_tokens=False).input_ids
        if not c_ids:
            raise ValueError(f"empty continuation {cont!r}")
        if not p_ids:  # nothing to condition on: use BOS/EOS as the first context token
            p_ids = [tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id]
        seqs.append((p_ids, c_ids))
    return _score_sequences(model, seqs, batch_size, device, desc)


def _score_sequences(
    model, seqs: list[tuple[list[int], list[int]]], batch_size: int, device, desc: str | None = None
) -> list[tuple[float, int]]:
    """Sum of log-probs of the second part of each (context ids, target ids), batched by length."""
    from tqdm.auto import tqdm

    order = sorted(range(len(seqs)), key=lambda i: -(len(seqs[i][0]) + len(seqs[i][1])))
    out: list[tuple[float, int]] = [(0.0, 0)] * len(seqs)
    pad = 0
    for b in tqdm(range(0, len(order), batch_size), desc=desc, disable=desc is None):
        idx = order[b : b + batch_size]
        rows = [seqs[i][0] + seqs[i][1] for i in idx]
        L = max(len(r) for r in rows)
        ids = torch.full((len(rows), L), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), L), dtype=torch.long)
        for r, row in enumerate(rows):  # right padding: positions are 0..n-1 as for a single sequence
            ids[r, : len(row)] = torch.tensor(row)
            mask[r, : len(row)] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False).logits
        logp = torch.log_softmax(logits.float(), dim=-1)  # (B, L, V): position t predicts token t + 1
        targets = next_token_targets(ids).to(device)  # (B, L), -100 at the last position (never read)
        tok_lp = logp.gather(-1, targets.clamp(min=0)[..., None])[..., 0]  # (B, L)
        for r, i in enumerate(idx):
            n_ctx, n_tgt = len(seqs[i][0]), len(seqs[i][1])
            out[i] = (float(tok_lp[r, n_ctx - 1 : n_ctx - 1 + n_tgt].sum()), n_tgt)
    return out


def choice_accuracy(
    model, tokenizer, items: Sequence[ChoiceItem], batch_size: int = 16, desc: str | None = None
) -> ChoiceScore:
    """Accuracy over ``items``: ``acc`` by summed log-likelihood, ``acc_norm`` by mean per token."""
    pairs = [(it.prompt, c) for it in items for c in it.choices]
    scores = continuation_logprobs(model, tokenizer, pairs, batch_size, desc=desc)
    k = 0
    right = right_norm = 0
    for it in items:
        s = scores[k : k + len(it.choices)]
        k += len(it.choices)
        right += int(np.argmax([lp for lp, _ in s]) == it.answer)
        right_norm += int(np.argmax([lp / n for lp, n in s]) == it.answer)
    n = len(items)
    chance = float(np.mean([1 / len(it.choices) for it in items])) if n else float("nan")
    return ChoiceScore(acc=right / n, acc_norm=right_norm / n, n=n, chance=chance)


@torch.inference_mode()
def perplexity(
    model, tokenizer, texts: Sequence[str], batch_size: int = 16, desc: str | None = None
) -> Perplexity:
    """Token-level perplexity ``exp(sum NLL / n tokens)`` of ``texts``, each scored on its own.

    Every token after the first is predicted (with a BOS-adding tokenizer, the first word too). No EOS.
    """
    seqs = []
    for t in texts:
        ids = _prompt_ids(tokenizer, t)
        if len(ids) < 2:
            continue
        seqs.append((ids[:1], ids[1:]))
    scored = _score_sequences(model, seqs, batch_size, next(model.parameters()).device, desc)
    nll = -sum(lp for lp, _ in scored)
    n_tokens = sum(n for _, n in scored)
    return Perplexity(
        perplexity=math.exp(nll / n_tokens), nll_per_token=nll / n_tokens, tokens=n_tokens, texts=len(seqs)
    )


def heldout_sample(n: int, seed: int = 0) -> list[str]:
    from unimae.data.wiki import wiki_sentences

    sentences = wiki_sentences("heldout")
    return rng_for("heldout-ppl", seed).sample(sentences, min(n, len(sentences)))


# --- the command ----------------------------------------------------------------------------------------


def run_lm_eval(
    model: str,
    output_dir: str | Path | None = None,
    *,
    n_sentences: int = 500,
    n_examples: int = 200,
    tasks: Sequence[str] | None = None,
    batch_size: int = 16,
    device: str | None = None,
    label: str | None = None,
    command: str | None = None,
    max_new_tokens: int = 48,
    prompts: Sequence[str] = GENERATION_PROMPTS,
) -> LmEvalResult:
    """Perplexity, multiple-choice accuracy and greedy generations of one model -> lm_eval.json
    (``result.path``)."""
    from unimae.encoding.encoder import Encoder
    from unimae.evaluation.benchmark import model_slug
    from unimae.llm import weights_fingerprint

    tasks = list(tasks or DEFAULT_MC_TASKS)
    unknown = [t for t in tasks if t not in MC_TASKS]
    if unknown:
        raise UserError(f"unknown multiple-choice task(s) {unknown}; choose from {list(MC_TASKS)}")
    paths = {t: data_file("bigbench", MC_TASKS[t]) for t in tasks}  # fail before loading the model
    start, cpu_start = time.perf_counter(), time.process_time()
    enc = Encoder.from_pretrained(model, device=device)
    lm = enc.model
    ppl, mc = _scores(enc, n_sentences, paths, n_examples, batch_size)
    generations = [
        Generation(prompt=p, output=enc.generate(p, max_new_tokens=max_new_tokens)) for p in prompts
    ]
    result = LmEvalResult(
        label=label or model,
        model_info=ModelInfo(
            model=model, revision=weights_fingerprint(lm), device=str(enc.device), **run_info(model)
        ),
        perplexity=ppl,
        multiple_choice=mc,
        choice_accuracy=float(np.mean([m.acc for m in mc.values()])),
        choice_accuracy_norm=float(np.mean([m.acc_norm for m in mc.values()])),
        settings=LmEvalSettings(
            n_sentences=n_sentences,
            n_examples=n_examples,
            seed=0,
            scoring="acc: summed log-likelihood of each choice given the BIG-bench zero-shot prompt; "
            "acc_norm: mean log-likelihood per choice token",
            max_new_tokens=max_new_tokens,
        ),
        generations=generations,
        seconds=time.perf_counter() - start,
        cpu_seconds=time.process_time() - cpu_start,
        command=command or f"unimae lm-eval {model}",
        versions=package_versions(),
    )
    out = Path(output_dir) if output_dir else Path("results") / model_slug(model) / "lm-eval"
    result.save(out / "lm_eval.json")
    return result


def _scores(
    enc, n_sentences: int, paths: dict[str, Path], n_examples: int, batch_size: int
) -> tuple[Perplexity, dict[str, ChoiceScore]]:
    """Held-out perplexity and each multiple-choice task's accuracy (``paths``: task -> its BIG-bench file)
    of ``enc``'s model, each with the seconds it took."""
    lm, tok = enc.model, enc.tokenizer
    t0 = time.perf_counter()
    ppl = perplexity(lm, tok, heldout_sample(n_sentences), batch_size, desc="perplexity")
    ppl.seconds = time.perf_counter() - t0
    mc = {}
    for name, path in paths.items():
        t0 = time.perf_counter()
        mc[name] = choice_accuracy(lm, tok, bigbench_items(path, n_examples, name), batch_size, desc=name)
        mc[name].seconds = time.perf_counter() - t0
    return ppl, mc
