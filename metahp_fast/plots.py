"""PNG plots of a tuning run (matplotlib, imported only when a plot is drawn)."""
from __future__ import annotations

import math
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


def readable_log_axis(axis, low: float, high: float) -> None:
    """Plain tick labels (0.2, 0.5, 1e-05) on a log axis spanning [low, high], few enough not to overlap:
    1-2-5 steps within two decades, powers of ten beyond, no minor labels."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    decades = math.log10(max(high, 1e-300) / max(low, 1e-300)) if low > 0 and high > 0 else 3.0
    subs = (1.0, 2.0, 5.0) if decades < 2 else (1.0,)
    axis.set_major_locator(LogLocator(base=10, subs=subs, numticks=7))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


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
    losses = [p[1] for pts in result.curves.values() for p in pts if 0 < p[1] < float("inf")]
    if losses:
        readable_log_axis(ax.yaxis, min(losses), max(losses))
    ax.set_xlabel("training step")
    ax.set_ylabel("validation loss (log)")
    steps = result.config["steps"]
    full = sum(1 for t in result.trials if t["steps"] >= steps)
    ax.set_title(f"{result.method} on {result.task}: {len(result.curves)} candidates, {full} trained the full "
                 f"{steps} steps", fontsize=10)
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
        xs = [t["hparams"][name] for t in trials] + [result.best_hparams[name]]
        if isinstance(space[name], LogUniform):
            ax.set_xscale("log")
            readable_log_axis(ax.xaxis, min(xs), max(xs))
        ys = [t["val_loss"] for t in trials if t["val_loss"] > 0]
        ax.set_yscale("log")
        if ys:
            readable_log_axis(ax.yaxis, min(ys), max(ys))
        ax.set_xlabel(name)
    axes[0][0].set_ylabel("validation loss")
    if len(set(steps)) > 1:
        fig.colorbar(sc, ax=axes[0].tolist(), label="steps trained")
    fig.suptitle(f"{result.method} on {result.task}: hyperparameters vs validation loss\n(star: the pick, the "
                 f"best of the candidates trained the full {result.config['steps']} steps"
                 + ("" if len(set(steps)) > 1 else f"; every candidate trained {steps[0] if steps else 0} steps")
                 + ")", fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


__all__ = ["plot_learning_curves", "plot_hparams"]
