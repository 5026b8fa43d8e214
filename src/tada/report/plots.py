"""Figures a person can open: the layer heatmap (fig. 3) and alpha curves (sec. 4.2)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def impact_heatmap(matrix: pd.DataFrame, path: str | Path, title: str | None = None,
                   flagged: pd.DataFrame | None = None) -> Path:
    """concept x layer Impact (eq. 9) as a heatmap PNG; cells of `flagged` (same shape, bool) that are True
    carry a "!" (their Impact means little, see the table's flags), undefined cells a "n/a"."""
    path = _folder_for(path)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * matrix.shape[1] + 2), 0.5 * matrix.shape[0] + 1.6))
    values = matrix.to_numpy(dtype=float)
    im = ax.imshow(values, aspect="auto", cmap="viridis")
    marks = flagged.reindex(index=matrix.index, columns=matrix.columns).fillna(False).to_numpy(bool) \
        if flagged is not None else None
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            if not np.isfinite(values[i, j]):
                ax.text(j, i, "n/a", ha="center", va="center", fontsize=7, color="gray")
            elif marks is not None and marks[i, j]:
                ax.text(j, i, "!", ha="center", va="center", fontsize=9, color="red", fontweight="bold")
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


def spectrogram_png(wave, sample_rate: int, path: str | Path) -> Path:
    """A log-mel spectrogram of a mono clip, as wide as the page's clips, time running 0..duration."""
    import librosa
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    mel = librosa.feature.melspectrogram(y=np.asarray(wave, dtype=np.float32), sr=sample_rate, n_mels=64,
                                         n_fft=1024, hop_length=256)
    fig = plt.figure(figsize=(4.2, 1.2), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(librosa.power_to_db(mel, ref=np.max), origin="lower", aspect="auto", cmap="magma",
              extent=(0, len(wave) / sample_rate, 0, 64))
    ax.axis("off")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
