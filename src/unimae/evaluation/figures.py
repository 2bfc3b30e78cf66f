"""The figure writer every plot shares (``unimae tsne``, and the study figures under ``studies/``)."""

from __future__ import annotations

from pathlib import Path


def save_figure(fig, path: str | Path, **savefig_kwargs) -> Path:
    """Lay out ``fig``, write it to ``path`` (creating its folder) and close it; returns the path."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, **savefig_kwargs)
    plt.close(fig)
    return path
