"""Golden losses (as torchtune's recipe tests): the first three steps of a tiny run, stored and re-checked.

The tiny random Llama of conftest.py is trained for 3 steps through the real training loop, once with
the UniMAE objective (MAR and MRC both active) and once with MNTP. The logged losses and gradient norms
of every step are compared with ``tests/fixtures/golden_losses.json`` to a RELATIVE tolerance of 1e-4,
so a refactor that changes any number (masking, loss normalisation, optimizer groups, data order)
fails here. Every method knob is pinned below, so a changed default in TrainConfig does not move them.

The fixture is written only by this file, never by hand; regenerate it (only when a change of the
numbers is intended, and say so in the commit) with:

    OMP_NUM_THREADS=1 .venv/bin/python tests/test_golden_loss.py --regenerate
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # conftest's helpers, also when run as a script

from conftest import make_tiny_llama, random_sentences  # noqa: E402

FIXTURE = Path(__file__).parent / "fixtures" / "golden_losses.json"
REL_TOL = 1e-4
STEPS = 3

# Every field that moves a number, pinned (not TrainConfig's defaults, which may change).
COMMON = dict(
    steps=STEPS,
    batch_size=4,
    grad_accum_steps=1,
    max_length=16,
    save_every=0,
    log_every=1,
    seed=42,
    lr=1e-3,
    decoder_lr=1e-3,
    weight_decay=0.0,
    warmup_steps=1,
    lr_scheduler="constant_with_warmup",
    max_grad_norm=1.0,
    precision="fp32",
    head_precision="fp32",
    loss_chunk_size=0,
    lora=False,
    gradient_checkpointing=False,
)
RUNS = {
    "unimae": dict(
        objective="unimae",
        mar_mask_ratio=0.5,
        mrc_mask_ratio=0.5,
        alpha=1.0,
        mrc_weight=1.0,
        mar_predict_eos=True,
        decoder_mlp_ratio=4.0,
        decoder_share_embeddings=True,
    ),
    "mntp": dict(objective="mntp", mntp_mask_ratio=0.2),
}
KEYS = {"unimae": ("mar_loss", "mrc_loss", "grad_norm"), "mntp": ("mntp_loss", "grad_norm")}


def run_losses(name: str, model: Path, corpus: Path, out: Path) -> list[dict[str, float]]:
    """Train run ``name`` for STEPS steps; the golden keys of each step's metrics line."""
    from unimae.training.config import load_config
    from unimae.training.loop import train

    cfg = load_config(
        None, {**COMMON, **RUNS[name], "model": str(model), "data": str(corpus), "output_dir": str(out)}
    )
    run = train(cfg)
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [{k: m[k] for k in ("step", *KEYS[name])} for m in lines]


def _inputs(root: Path) -> tuple[Path, Path]:
    model = make_tiny_llama(root / "tiny_llama")
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(random_sentences(64)) + "\n")
    return model, corpus


@pytest.mark.parametrize("name", sorted(RUNS))
def test_golden_losses(name, tmp_path):
    golden = json.loads(FIXTURE.read_text())[name]
    model, corpus = _inputs(tmp_path)
    got = run_losses(name, model, corpus, tmp_path / "run")
    assert [m["step"] for m in got] == list(range(1, STEPS + 1))
    for want, have in zip(golden, got, strict=True):
        for key in KEYS[name]:
            assert have[key] == pytest.approx(want[key], rel=REL_TOL), (name, want["step"], key)


def regenerate() -> None:
    """Rewrite the fixture from the current code (only for an intended change of the numbers)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["UNIMAE_CACHE"] = str(root / "cache")  # as conftest's autouse fixture does
        model, corpus = _inputs(root)
        golden = {name: run_losses(name, model, corpus, root / name) for name in sorted(RUNS)}
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_text(json.dumps(golden, indent=2) + "\n")
    print(f"wrote {FIXTURE}")


if __name__ == "__main__":
    if sys.argv[1:] != ["--regenerate"]:
        sys.exit(f"usage: {sys.argv[0]} --regenerate   (rewrites {FIXTURE})")
    regenerate()
