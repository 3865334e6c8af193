"""PNG plots of a tuning run (matplotlib, imported only when a plot is drawn)."""
from __future__ import annotations

from pathlib import Path
from typing import Union

from .search_space import LogUniform, SearchSpace
from .tuners.base import TuneResult


def _pyplot():
    try:
        import matplotlib
    except ImportError as e:
        raise ImportError("plots need matplotlib: pip install 'metahp-fast[plot]'") from e
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_learning_curves(result: TuneResult, path: Union[str, Path]) -> Path:
    """Validation loss against training step for every candidate of the run (the pick in black)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    best = result.best_id
    for i, pts in result.curves.items():
        if i != best and pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], lw=0.6, alpha=0.35, marker="." if len(pts) == 1 else "")
    if best in result.curves:
        pts = result.curves[best]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], color="black", lw=2, label=f"pick (candidate {best})")
        ax.legend()
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("validation loss (log)")
    ax.set_title(f"{result.method} on {result.task}: {len(result.curves)} candidates")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_hparams(result: TuneResult, space: SearchSpace, path: Union[str, Path]) -> Path:
    """One scatter per tuned hyperparameter: its value against the validation loss each candidate reached
    (colour: steps trained), the pick marked."""
    plt = _pyplot()
    dims = list(space.dims)
    fig, axes = plt.subplots(1, len(dims), figsize=(3.6 * len(dims) + 1.2, 3.6), squeeze=False,
                             constrained_layout=True)
    trials = [t for t in result.trials if t["val_loss"] == t["val_loss"] and t["val_loss"] < float("inf")]
    steps = [t["steps"] for t in trials]
    for ax, name in zip(axes[0], dims):
        sc = ax.scatter([t["hparams"][name] for t in trials], [t["val_loss"] for t in trials], c=steps, s=12,
                        cmap="viridis", alpha=0.8)
        ax.scatter([result.best_hparams[name]], [result.best_val["loss"]], marker="*", s=200, color="red",
                   edgecolor="black", zorder=3)
        if isinstance(space[name], LogUniform):
            ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(name)
    axes[0][0].set_ylabel("validation loss")
    fig.colorbar(sc, ax=axes[0].tolist(), label="steps trained")
    fig.suptitle(f"{result.method} on {result.task}: hyperparameters vs validation loss (star: pick)")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


__all__ = ["plot_learning_curves", "plot_hparams"]
