"""``studies/short_texts.py``: the diagnosis of a two-topic split on synthetic vectors whose largest
direction follows the text length, not the topic."""

from __future__ import annotations

import numpy as np
from short_texts import diagnose


def _lines(n: int = 200, seed: int = 0) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    topics = np.repeat([0, 1], n // 2)
    n_tokens = rng.integers(3, 20, size=n)
    v = rng.normal(size=(n, 16))
    v[:, 0] += 3.0 * (2 * topics - 1)  # the topic: a clear but small direction
    v[:, 1] = 40.0 * (n_tokens - n_tokens.mean()) / n_tokens.std()  # a huge direction that is the length
    texts = [" ".join(["w"] * int(k)) + ("?" if i % 3 == 0 else "") for i, k in enumerate(n_tokens)]
    return v, texts, topics, n_tokens


def test_a_length_direction_takes_the_raw_split_and_removing_it_gives_the_topic_back():
    v, texts, topics, n_tokens = _lines()
    found = diagnose(v, texts, topics, n_tokens)
    assert found["raw_split_follows"]["length"] > 0.5 > found["raw_split_follows"]["topic"]
    assert found["v_measure"]["raw"] < 0.2 and found["v_measure"]["center-pc1"] > 0.8
    assert found["pc1_variance_share"] > 0.8 and abs(found["pc1_length_correlation"]) > 0.9
    assert found["topic_separation"] > 0


def test_without_the_length_direction_the_raw_split_is_the_topic():
    v, texts, topics, n_tokens = _lines()
    v[:, 1] = 0.0
    found = diagnose(v, texts, topics, n_tokens)
    assert found["v_measure"]["raw"] > 0.8 and found["raw_split_follows"]["topic"] > 0.8
