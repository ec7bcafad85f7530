"""PNG plots of a run: accuracy against distance threshold, and a world map of errors.

The land outline comes from ``global-land-mask`` (a 30-arc-second land/sea mask shipped inside the
wheel, from the GLOBE elevation data), drawn as filled land with its coastline contour: no download.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm

from evals.metrics import THRESHOLDS_KM

LAND_STEP = 30  # keep every 30th cell of the 43200 x 21600 mask: a 15-arc-minute grid


@functools.lru_cache(maxsize=1)
def land_grid() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lons, lats, land mask: True on land) on a coarse grid, lats ascending."""
    from global_land_mask import globe

    mask = ~globe._mask[::LAND_STEP, ::LAND_STEP]  # the shipped array is the ocean mask
    lats = globe._lat[::LAND_STEP]
    lons = globe._lon[::LAND_STEP]
    if lats[0] > lats[-1]:
        lats, mask = lats[::-1], mask[::-1]
    return lons, lats, mask


def plot_accuracy_curve(curves: dict[str, Sequence[float | None]], path: Path) -> Path:
    """Accuracy (% of all rows, failed = miss) against threshold, one line per run label."""
    grid = np.logspace(-1, np.log10(20000), 200)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for label, distances in curves.items():
        d = np.array([np.inf if x is None else x for x in distances], dtype=float)
        acc = [100.0 * float(np.mean(d <= t)) if d.size else 0.0 for t in grid]
        ax.plot(grid, acc, label=label)
        ax.scatter(THRESHOLDS_KM, [100.0 * float(np.mean(d <= t)) if d.size else 0.0 for t in THRESHOLDS_KM], s=18)
    for t in THRESHOLDS_KM:
        ax.axvline(t, color="0.85", lw=0.8, zorder=0)
    ax.set_xscale("log")
    ax.set_xlabel("distance threshold (km, geodesic WGS-84)")
    ax.set_ylabel("accuracy (% of images within threshold)")
    ax.set_ylim(0, 100)
    ax.set_title("Accuracy vs distance threshold")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_error_map(
    gt: Sequence[tuple[float, float]],
    pred: Sequence[tuple[float, float] | None],
    distances: Sequence[float | None],
    path: Path,
    title: str = "Errors by ground-truth location",
) -> Path:
    """World map: each ground truth coloured by its error (log km); thin lines to the prediction; x = failed."""
    lons, lats, mask = land_grid()
    fig, ax = plt.subplots(figsize=(11, 5.6), dpi=110)
    ax.set_facecolor("#dfeaf3")
    ax.contourf(lons, lats, mask.astype(float), levels=[0.5, 1.5], colors=["#f1eee4"])
    ax.contour(lons, lats, mask.astype(float), levels=[0.5], colors=["#8a8a8a"], linewidths=0.4)
    ok = [(g, p, d) for g, p, d in zip(gt, pred, distances, strict=False) if p is not None and d is not None]
    bad = [g for g, p, d in zip(gt, pred, distances, strict=False) if p is None or d is None]
    for (glat, glon), (plat, plon), _ in ok:
        if abs(glon - plon) <= 180:  # skip lines that would wrap around the map
            ax.plot([glon, plon], [glat, plat], color="0.4", lw=0.3, alpha=0.5)
    if ok:
        errors = np.clip([d for _, _, d in ok], 0.1, 20000)
        sc = ax.scatter(
            [g[1] for g, _, _ in ok],
            [g[0] for g, _, _ in ok],
            c=errors,
            cmap="plasma_r",
            norm=LogNorm(vmin=0.1, vmax=20000),
            s=14,
            edgecolors="k",
            linewidths=0.2,
            zorder=3,
        )
        fig.colorbar(sc, ax=ax, label="error (km)", fraction=0.025, pad=0.01)
    if bad:
        ax.scatter([g[1] for g in bad], [g[0] for g in bad], marker="x", color="red", s=16, zorder=4, label="failed")
        ax.legend(loc="lower left", fontsize=8)
    ax.set_xlim(-180, 180)
    ax.set_ylim(-90, 90)
    ax.set_aspect("equal")
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_confidence(
    reliability: dict[str, list[tuple[float, float, int]]], recall_vs_area: list[tuple[float, float]], path: Path
) -> Path:
    """Reliability diagram (predicted P(error <= t) against the observed hit rate, per threshold)
    beside the Recall-vs-Area curve."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
    left.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect")
    for key, points in reliability.items():
        if points:
            left.plot([p for p, _, _ in points], [r for _, r, _ in points], marker="o", markersize=3, label=f"{key} km")
    left.set(xlabel="predicted P(error <= t)", ylabel="observed hit rate", xlim=(0, 1), ylim=(0, 1), title="Reliability")
    left.legend(fontsize=8)
    right.plot([a for a, _ in recall_vs_area], [100 * r for _, r in recall_vs_area], marker="o", markersize=3)
    right.set(
        xscale="log",
        xlabel="area of the 90% search region (km2)",
        ylabel="found within it (% of photos)",
        title="Recall vs area",
        ylim=(0, 100),
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
