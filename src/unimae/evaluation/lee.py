"""STS on the Lee et al. (2005) document set shipped in gensim's test data.

``lee.cor`` holds 50 short news documents, one per line (Latin-1; the last line has no newline), and
``similarities0-1.txt`` a 50x50 upper-triangular matrix of mean human similarity ratings (scaled to 0..1).
As in gensim's ``test_lee.py``, the 1,225 pairs i < j of the upper triangle are the evaluation pairs; the
score is the Spearman correlation between the cosine similarity of the two embeddings and the human rating.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from unimae.paths import package_file

LEE_DOCS_RELATIVE_PATH = "test/test_data/lee.cor"
LEE_SIMILARITIES_RELATIVE_PATH = "test/test_data/similarities0-1.txt"
N_DOCUMENTS = 50
N_PAIRS = N_DOCUMENTS * (N_DOCUMENTS - 1) // 2  # 1225


def load_lee_documents() -> list[str]:
    """The 50 Lee documents, in file order, stripped. Raises ValueError unless there are exactly 50."""
    raw = package_file("gensim", LEE_DOCS_RELATIVE_PATH).read_bytes().decode("latin-1")
    documents = [line.strip() for line in raw.splitlines() if line.strip()]
    if len(documents) != N_DOCUMENTS:
        raise ValueError(f"lee.cor should hold {N_DOCUMENTS} documents, found {len(documents)}")
    return documents


def load_lee_similarities() -> np.ndarray:
    """The (50, 50) human similarity matrix (upper triangle filled, ratings in 0..1)."""
    matrix = np.loadtxt(package_file("gensim", LEE_SIMILARITIES_RELATIVE_PATH), dtype=np.float64)
    if matrix.shape != (N_DOCUMENTS, N_DOCUMENTS):
        raise ValueError(f"similarities0-1.txt should be {N_DOCUMENTS}x{N_DOCUMENTS}, got {matrix.shape}")
    return matrix


def load_lee_pairs() -> tuple[list[str], list[tuple[int, int]], np.ndarray]:
    """(the 50 documents, the 1225 pairs (i, j) with i < j in row-major order, their 1225 human scores)."""
    documents = load_lee_documents()
    matrix = load_lee_similarities()
    rows, cols = np.triu_indices(N_DOCUMENTS, k=1)
    pairs = [(int(i), int(j)) for i, j in zip(rows, cols, strict=True)]
    return documents, pairs, matrix[rows, cols]


def pair_cosines(embeddings: np.ndarray, pairs: Sequence[tuple[int, int]]) -> np.ndarray:
    """Cosine similarity of each (i, j) pair of rows; an all-zero row has cosine 0 with everything."""
    x = np.asarray(embeddings, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.where(norms > 0, norms, 1.0)
    idx = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    return np.einsum("pd,pd->p", x[idx[:, 0]], x[idx[:, 1]])


def lee_spearman(embeddings: np.ndarray) -> float:
    """Spearman correlation between pair cosines of the (50, d) document embeddings and the human scores.

    Rows must be the embeddings of ``load_lee_pairs()[0]`` in order. Returns NaN when all cosines are equal
    (the correlation is undefined). Raises ValueError for another shape or non-finite values.
    """
    from scipy.stats import spearmanr

    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != N_DOCUMENTS:
        raise ValueError(f"expected embeddings of shape ({N_DOCUMENTS}, d), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("embeddings contain NaN or infinite values")
    _, pairs, human = load_lee_pairs()
    cosines = pair_cosines(x, pairs)
    if np.ptp(cosines) == 0:
        return float("nan")
    return float(spearmanr(cosines, human)[0])


def _to_numpy(values: object) -> np.ndarray:
    """A NumPy array from an array-like or a (possibly GPU, grad-tracking) torch tensor."""
    if hasattr(values, "detach"):
        values = values.detach().float().cpu().numpy()  # type: ignore[union-attr]
    return np.asarray(values)


def evaluate_lee(encode: Callable[[list[str]], np.ndarray]) -> float:
    """Spearman correlation on Lee: ``encode`` maps the 50 documents to a (50, d) array (or tensor)."""
    documents, _, _ = load_lee_pairs()
    return lee_spearman(_to_numpy(encode(documents)))
