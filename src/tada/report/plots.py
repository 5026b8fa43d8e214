"""Figures a person can open: the layer heatmap (fig. 3) and alpha curves (sec. 4.2)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def impact_heatmap(matrix: pd.DataFrame, path: str | Path, title: str | None = None) -> Path:
    """concept x layer Impact (eq. 9) as a heatmap PNG."""
    path = _folder_for(path)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * matrix.shape[1] + 2), 0.5 * matrix.shape[0] + 1.6))
    im = ax.imshow(matrix.to_numpy(dtype=float), aspect="auto", cmap="viridis")
    ax.set_xticks(range(matrix.shape[1]), [str(c) for c in matrix.columns])
    ax.set_yticks(range(matrix.shape[0]), [str(i) for i in matrix.index])
    ax.set_xlabel("cross-attention layer")
    fig.colorbar(im, ax=ax, label="Impact")
    return _save(fig, ax, path, title)


def alpha_curves(table: pd.DataFrame, path: str | Path, x: str = "alpha", y: str = "alignment",
                 hue: str = "config", title: str | None = None) -> Path:
    """One line per `hue` of the mean `y` over `x` (e.g. alignment against steering strength)."""
    path = _folder_for(path)
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, df in table.groupby(hue, sort=False):
        mean = df.groupby(x)[y].mean()
        ax.plot(mean.index, mean.to_numpy(), marker="o", label=str(key))
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.legend(fontsize="small")
    return _save(fig, ax, path, title)


def _folder_for(path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _save(fig, ax, path: Path, title: str | None) -> Path:
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
