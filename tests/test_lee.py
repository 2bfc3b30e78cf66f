"""The Lee et al. (2005) STS set and its Spearman score."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import rankdata

from unimae.evaluation.lee import (
    N_DOCUMENTS,
    N_PAIRS,
    evaluate_lee,
    lee_spearman,
    load_lee_pairs,
    load_lee_similarities,
    pair_cosines,
)


@pytest.fixture(scope="module")
def lee():
    return load_lee_pairs()


def test_loader_shapes(lee):
    documents, pairs, scores = lee
    assert len(documents) == N_DOCUMENTS == 50
    assert all(isinstance(d, str) and len(d.split()) > 20 for d in documents)
    assert documents[-1].endswith("Senator Brown said today.")  # last line, which has no newline
    assert len(pairs) == N_PAIRS == 1225 == len(set(pairs))
    assert all(0 <= i < j < 50 for i, j in pairs)
    assert scores.shape == (1225,)
    assert 0.0 < scores.min() and scores.max() <= 1.0
    matrix = load_lee_similarities()
    assert [scores[k] for k in (0, 1, 1224)] == [matrix[0, 1], matrix[0, 2], matrix[48, 49]]


def _hand_spearman(embeddings, pairs, scores):
    x = np.asarray(embeddings, dtype=np.float64)
    cos = [float(x[i] @ x[j] / (np.linalg.norm(x[i]) * np.linalg.norm(x[j]))) for i, j in pairs]
    return float(np.corrcoef(rankdata(cos), rankdata(scores))[0, 1])


def test_spearman_matches_hand_computation(lee):
    _, pairs, scores = lee
    rng = np.random.default_rng(0)
    for d in (3, 16, 64):
        embeddings = rng.normal(size=(50, d))
        assert lee_spearman(embeddings) == pytest.approx(_hand_spearman(embeddings, pairs, scores), abs=1e-12)
    # scale of each row does not matter for cosine
    embeddings = rng.normal(size=(50, 8))
    scaled = embeddings * rng.uniform(0.1, 10.0, size=(50, 1))
    assert lee_spearman(scaled) == pytest.approx(lee_spearman(embeddings), abs=1e-12)


def _embeddings_with_cosine(scores_matrix: np.ndarray, sign: float) -> np.ndarray:
    """Unit vectors whose pairwise cosines are sign * eps * human score: I + eps*S is positive definite."""
    s = np.triu(scores_matrix, 1)
    s = s + s.T
    eps = 0.5 / np.abs(s).sum(axis=1).max()  # diagonal dominance keeps the Gram matrix positive definite
    gram = np.eye(len(s)) + sign * eps * s
    return np.linalg.cholesky(gram)  # rows x_i with x_i . x_j = gram[i, j] and |x_i| = 1


def test_spearman_is_one_when_cosine_follows_the_humans(lee):
    _, pairs, scores = lee
    matrix = load_lee_similarities()
    for sign in (1.0, -1.0):
        embeddings = _embeddings_with_cosine(matrix, sign)
        cosines = pair_cosines(embeddings, pairs)
        # exact up to float noise: rounding removes the noise that breaks the humans' many ties
        rounded = np.round(cosines, 9)
        assert float(np.corrcoef(rankdata(rounded), rankdata(scores))[0, 1]) == pytest.approx(sign, abs=1e-12)
        # unrounded, the noise orders tied pairs arbitrarily, which costs well under 1%
        assert lee_spearman(embeddings) == pytest.approx(sign, abs=0.01)


def test_evaluate_lee_encodes_the_documents_in_order(lee):
    documents, _, _ = lee
    target = _embeddings_with_cosine(load_lee_similarities(), 1.0)
    seen = []

    def encode(texts):
        seen.append(list(texts))
        return target[[documents.index(t) for t in texts]]

    assert evaluate_lee(encode) == lee_spearman(target) > 0.99
    assert seen == [documents]


def test_bad_embeddings():
    with pytest.raises(ValueError, match=r"shape \(50, d\)"):
        lee_spearman(np.ones((49, 4)))
    with pytest.raises(ValueError, match=r"shape \(50, d\)"):
        lee_spearman(np.ones(50))
    bad = np.ones((50, 4))
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        lee_spearman(bad)
    assert np.isnan(lee_spearman(np.ones((50, 4))))  # all cosines equal: undefined


def test_pair_cosines_zero_row():
    x = np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    np.testing.assert_allclose(pair_cosines(x, [(0, 1), (0, 2)]), [0.0, np.sqrt(0.5)])
