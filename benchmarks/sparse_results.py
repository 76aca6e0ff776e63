"""Results of the sparse-slice protocol: one JSON of every run, Markdown tables, saved predictions.

Split from ``sparse_slices.py``, which runs the protocol and calls these.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

# --------------------------------------------------------------------------- results

#: The bands of ``by_distance`` (slices to the nearest painted slice), as sparse_slices.py names them.
DISTANCE_BANDS = ("1-3", "4-8", "9-16")


def run_key(record: dict) -> tuple:
    return (record["dataset"], record["axis"], record["k"], record.get("shift", 0), record["method"], record["seed"])


def load_results(out: Path) -> list[dict]:
    path = out / "results.json"
    return json.loads(path.read_text())["runs"] if path.is_file() else []


def save_results(out: Path, runs: list[dict], method_order: tuple[str, ...], peak_rss_mb: float) -> None:
    """Write ``results.json`` (every run, sorted) and ``results.md`` (summary and per-run tables)."""
    runs = sorted(runs, key=lambda r: (r["dataset"], str(r["k"]), method_order.index(r["method"]), r["seed"]))
    machine = {"torch": torch.__version__, "threads": torch.get_num_threads(), "peak_rss_mb": peak_rss_mb}
    (out / "results.json").write_text(json.dumps({"machine": machine, "runs": runs}, indent=1))
    (out / "results.md").write_text(summary_table(runs) + markdown_table(runs))


def _fmt(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def mean_sd(values: list[float | None], digits: int = 3) -> str:
    """Mean ± sample sd (ddof = 1) of the values given; one value alone has no spread to show."""
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}"


def summary_table(runs: list[dict]) -> str:
    """Mean ± sample standard deviation over seeds, one row per dataset, k and method."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        k = str(r["k"]) + (f" (shift {r['shift']:+d})" if r.get("shift") else "")
        groups.setdefault((r["dataset"], r["axis"], k, r["method"]), []).append(r)
    lines = [
        "| dataset | k | method | seeds | Dice | worst run | worst class (its run) | "
        + " | ".join(f"Dice {band} slices away" for band in DISTANCE_BANDS)
        + " | HD95 mm | ASD mm | train s | steps/s |",
        "|---|---|---|---|---|---|---|" + "---|" * len(DISTANCE_BANDS) + "---|---|---|---|",
    ]
    for (dataset, axis, k, method), group in groups.items():
        scores = [r["scores"] for r in group]
        timing = [r["timing"] for r in group]
        lines.append(
            f"| {dataset} (axis {axis}) | {'every 2nd' if k == 'None' else k} | {method} | {len(group)} | "
            f"**{mean_sd([s['mean_dice'] for s in scores], 3)}** | {_worst_run(group)} | {_worst_class(group)} | "
            + "".join(f"{mean_sd([r.get('by_distance', {}).get(b) for r in group], 2)} | " for b in DISTANCE_BANDS)
            + f"{mean_sd([s['mean_hd95_mm'] for s in scores], 1)} | "
            f"{mean_sd([s['mean_asd_mm'] for s in scores], 2)} | "
            f"{mean_sd([t['train_s'] for t in timing], 0)} | {mean_sd([t.get('steps_per_s') for t in timing], 2)} |"
        )
    return "\n".join(lines) + "\n"


def _worst_run(group: list[dict]) -> str:
    """The lowest mean Dice of the runs, with its seed: one run is what one user gets."""
    worst = min(group, key=lambda r: r["scores"]["mean_dice"])
    return f"{worst['scores']['mean_dice']:.3f} (seed {worst['seed']})"


def _worst_class(group: list[dict]) -> str:
    """The lowest Dice of any class in any run: a class that collapses is a failure a user sees."""
    rows = [
        (row["dice"], row["name"], r["seed"]) for r in group for row in r["scores"]["rows"] if row["dice"] is not None
    ]
    if not rows:
        return "–"
    dice, name, seed = min(rows)
    return f"{dice:.2f} {name} (seed {seed})"


def markdown_table(runs: list[dict]) -> str:
    """One row per run: means, per-class Dice, time and memory."""
    lines = []
    for dataset in sorted({r["dataset"] for r in runs}):
        subset = [r for r in runs if r["dataset"] == dataset]
        names = [row["name"] for row in subset[0]["scores"]["rows"]]
        lines += [
            f"\n**{dataset}**, axis {subset[0]['axis']}\n",
            "| k | method | Dice | HD95 mm | ASD mm | "
            + " | ".join(names)
            + " | train s | steps | steps/s | 1st stream s | peak MB |",
            "|---|---|---|---|---|" + "---|" * len(names) + "---|---|---|---|---|",
        ]
        lines += [_markdown_row(r) for r in subset]
    return "\n".join(lines) + "\n"


def _markdown_row(r: dict) -> str:
    s, t = r["scores"], r["timing"]
    per_class = " | ".join(_fmt(row["dice"]) for row in s["rows"])
    k = "every 2nd" if r["k"] is None else r["k"]
    steps = t.get("steps", "–")
    speed = _fmt(t.get("steps_per_s"), 2)
    return (
        f"| {k} | {r['method']} | **{_fmt(s['mean_dice'])}** | {_fmt(s['mean_hd95_mm'], 1)} | "
        f"{_fmt(s['mean_asd_mm'], 2)} | {per_class} | {t['train_s']:.0f} | {steps} | {speed} | "
        f"{_fmt(t.get('first_stream_s'), 1)} | {_fmt(t.get('peak_rss_delta_mb'), 0)} |"
    )


def save_prediction(out: Path, record: dict, pred: np.ndarray) -> None:
    folder = out / "preds"
    folder.mkdir(exist_ok=True)
    k = "half" if record["k"] is None else record["k"]
    k = f"{k}_shift{record['shift']:+d}" if record.get("shift") else k
    np.savez_compressed(
        folder / f"{record['dataset']}_k{k}_{record['method']}_s{record['seed']}.npz",
        labels=pred.astype(np.uint8),
        slices=np.asarray(record["slices"]),
    )
