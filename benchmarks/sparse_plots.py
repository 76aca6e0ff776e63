"""Plots of the sparse-slice benchmark (Dice vs k, per class, vs distance, an overlay).

Split from ``sparse_slices.py``, which runs the protocol and calls :func:`plot_all`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from sparse_slices import ALL_METHODS, Dataset, load_results  # the sibling benchmark (run as a script)


def plot_all(out: Path, ds: Dataset) -> None:
    """Dice vs k, per-class Dice at k=3, Dice vs distance and one overlay, for ``ds``."""
    import matplotlib

    matplotlib.use("Agg")
    runs = [r for r in load_results(out) if r["dataset"] == ds.name and r["axis"] == ds.axis]
    if not runs:
        return
    plot_dice_vs_k(runs, out / f"{ds.name}_dice_vs_k.png")
    plot_per_class(runs, 3, out / f"{ds.name}_per_class_k3.png")
    plot_distance(runs, 3, out / f"{ds.name}_dice_vs_distance_k3.png")
    plot_overlay(out, ds, 3, out / f"{ds.name}_overlay_k3.png")


def _methods(runs: list[dict]) -> list[str]:
    return [m for m in ALL_METHODS if any(r["method"] == m for r in runs)]


def plot_dice_vs_k(runs: list[dict], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for method in _methods(runs):
        if method == "upper":
            upper = [r["scores"]["mean_dice"] for r in runs_of(runs, "upper")]
            ax.axhline(np.mean(upper), ls="--", c="k", label=f"upper (every 2nd, {len(upper)} seeds)")
            continue
        ks = sorted({r["k"] for r in runs_of(runs, method) if r["k"]})
        if ks:
            dice = [[r["scores"]["mean_dice"] for r in runs_of(runs, method, k)] for k in ks]
            sd = [np.std(d, ddof=1) if len(d) > 1 else 0.0 for d in dice]
            ax.errorbar(ks, [np.mean(d) for d in dice], yerr=sd, marker="o", capsize=3, label=method)
    ax.set(xlabel="painted slices k", ylabel="mean Dice (non-painted slices)", ylim=(0, 1))
    ax.grid(alpha=0.3)
    _save(fig, ax, path)


def _save(fig, ax, path: Path) -> None:
    """Legend, tight layout, PNG at 100 dpi, figure closed (the line and bar plots alike)."""
    import matplotlib.pyplot as plt

    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def runs_of(runs: list[dict], method: str, k: int | None = None) -> list[dict]:
    return [r for r in runs if r["method"] == method and (k is None or r["k"] == k)]


def plot_per_class(runs: list[dict], k: int, path: Path) -> None:
    import matplotlib.pyplot as plt

    chosen = [(m, runs_of(runs, m, k)) for m in _methods(runs) if runs_of(runs, m, k)]
    if not chosen:
        return
    names = [row["name"] for row in chosen[0][1][0]["scores"]["rows"]]
    width = 0.8 / len(chosen)
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for i, (method, group) in enumerate(chosen):
        dice = np.array(
            [[np.nan if row["dice"] is None else row["dice"] for row in r["scores"]["rows"]] for r in group]
        )
        label = method if len(group) == 1 else f"{method} (mean of {len(group)} seeds)"
        ax.bar(np.arange(len(names)) + i * width, np.nanmean(dice, axis=0), width, label=label)
    ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, rotation=20, fontsize=8)
    ax.set(ylabel=f"Dice, k = {k}", ylim=(0, 1))
    _save(fig, ax, path)


def plot_distance(runs: list[dict], k: int, path: Path) -> None:
    import matplotlib.pyplot as plt

    chosen = [(m, runs_of(runs, m, k)) for m in _methods(runs) if runs_of(runs, m, k)]
    if not chosen:
        return
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for method, group in chosen:
        bins = list(group[0]["by_distance"])
        # A bin no slice falls in (e.g. beyond 16 slices at k = 7) stays empty: NaN, no point drawn.
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            values = [np.nanmean([_value(r["by_distance"][b]) for r in group]) for b in bins]
        ax.plot(bins, values, marker="o", label=f"{method} (mean of {len(group)} runs)")
    ax.set(xlabel="distance to nearest painted slice (slices)", ylabel="per-slice mean Dice", ylim=(0, 1))
    ax.grid(alpha=0.3)
    _save(fig, ax, path)


def _value(value: float | None) -> float:
    return np.nan if value is None else value


def overlay_slice(truth: np.ndarray, slices: list[int]) -> int:
    """A non-painted slice with at least half the largest foreground area, far from painted ones."""
    area = (truth != 0).reshape(truth.shape[0], -1).sum(axis=1)
    candidates = np.flatnonzero(area >= area.max() / 2)
    distance = np.abs(candidates[:, None] - np.asarray(slices)[None, :]).min(axis=1)
    return int(candidates[np.argmax(distance)])


def _panel(ax, image: np.ndarray, labels: np.ndarray | None, title: str, box, n_classes: int) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    ax.imshow(image[box].T, cmap="gray", origin="lower")
    if labels is not None:
        colours = ListedColormap(plt.get_cmap("tab10").colors[:n_classes])
        masked = np.ma.masked_equal(labels[box].T, 0)
        ax.imshow(
            masked, cmap=colours, vmin=0.5, vmax=n_classes + 0.5, alpha=0.6, origin="lower", interpolation="nearest"
        )
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def plot_overlay(out: Path, ds: Dataset, k: int, path: Path) -> None:
    import matplotlib.pyplot as plt

    panels = [
        (m, out / "preds" / f"{ds.name}_k{k}_{m}_s{r['seed']}.npz")
        for m in ("action", "interpolation", "supervised", "rf")
        for r in [r for r in runs_of(load_results(out), m, k) if not r.get("shift")][:1]
    ]
    panels = [(m, p) for m, p in panels if p.is_file()]
    if not panels:
        return
    slices = runs_of(load_results(out), panels[0][0], k)[0]["slices"]
    truth = np.moveaxis(ds.truth, ds.axis, 0)
    s = overlay_slice(truth, slices)
    rows, cols = np.nonzero(truth[s])
    box = (slice(max(rows.min() - 15, 0), rows.max() + 16), slice(max(cols.min() - 15, 0), cols.max() + 16))
    image = np.moveaxis(ds.image, ds.axis, 0)[s]
    n = len(ds.class_names) - 1
    fig, axes = plt.subplots(1, len(panels) + 2, figsize=(2.6 * (len(panels) + 2), 3))
    _panel(axes[0], image, None, f"image, slice {s}", box, n)
    _panel(axes[1], image, truth[s], "truth", box, n)
    for ax, (method, file) in zip(axes[2:], panels, strict=True):
        _panel(ax, image, np.moveaxis(np.load(file)["labels"], ds.axis, 0)[s], method, box, n)
    distance = int(np.abs(np.asarray(slices) - s).min())
    fig.suptitle(f"{ds.name}, k = {k} (painted {slices}); {distance} slices from the nearest", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
