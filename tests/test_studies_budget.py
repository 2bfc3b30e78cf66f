"""The training-budget curve on offline-v2-dev (``studies/budget.py``): runs named by how their config differs
from the default recipe, by steps, with paired margins against the base model's prompt."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from budget import budget_points, budget_section
from summaries import bootstrapped_summary
from table_text import squeeze

from unimae.training.config import load_config

ITEMS = {"TaskA": np.random.default_rng(0).random(200), "TaskB": np.random.default_rng(1).random(300)}


def _put(results: Path, name: str, shift: float, training: dict | None = None) -> None:
    """A dev summary whose item scores are the fixture's plus ``shift`` (so margins are exact)."""
    values = {task: v + shift for task, v in ITEMS.items()}
    summary = bootstrapped_summary(
        name, values, category="STS", benchmark="offline-v2-dev", training=training
    )
    summary.save(results / "v25" / name / "offline-v2-dev" / "summary.json")


def _default(**changes) -> dict:
    """The training record of a ``--config default`` run, with ``changes`` (dotted field names)."""
    return {**load_config("default").flat(), "model": "smollm2-135m", "seed": 42, **changes}


def test_points_by_variant_and_steps_with_paired_margins(tmp_path):
    _put(tmp_path, "base-pcot", 0.0)
    _put(tmp_path, "unimae-s42", 0.02, _default())
    _put(tmp_path, "b300-s42", 0.04, _default(**{"optim.steps": 300}))
    _put(tmp_path, "c1-s42", -0.01, _default(**{"contrastive.weight": 1.0}))
    points = budget_points(tmp_path)
    assert [(p.variant, p.steps, p.texts) for p in points] == [
        ("default", 100, 1600),
        ("default", 300, 4800),
        ("contrastive.weight=1.0", 100, 1600),
    ]
    # a constant shift of every item: the paired interval is that shift exactly
    assert points[1].margin == pytest.approx(0.04) and points[1].margin_ci_low == pytest.approx(0.04)
    text = squeeze("\n".join(budget_section(tmp_path)))
    assert "## Training budget on `offline-v2-dev`" in text
    assert "| default | 42 | 300 | 4,800 |" in text and "| +4.00 [+4.00, +4.00] | lead |" in text
    assert "| -1.00 [-1.00, -1.00] | trails |" in text


def test_no_curve_no_section(tmp_path):
    assert budget_section(tmp_path) == []  # no baseline
    _put(tmp_path, "base-pcot", 0.0)
    _put(tmp_path, "unimae-s42", 0.02, _default())
    _put(tmp_path, "c1-s42", 0.01, _default(**{"contrastive.weight": 1.0}))
    assert len(budget_points(tmp_path)) == 2 and budget_section(tmp_path) == []  # one budget per variant
