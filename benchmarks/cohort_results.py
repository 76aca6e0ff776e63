"""Results of ``cohort.py``: one JSON of every run, a Markdown summary and a per-subject table.

A record is one method on one cohort with one training seed (``None``: the method does not
depend on it); it holds the scores of every subject it predicted, so the tables can be remade
from ``results.json`` alone.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import numpy as np
import torch
from sparse_results import mean_sd  # sibling module (run as a script)

#: What each method name in the tables means (the network methods are those of sparse_slices.py).
METHOD_NOTES = {
    "action": "ACTION, the other subjects as unlabeled data",
    "supervised": "supervised U-Net, painted slices only",
    "carried:propagation": "the product's own atlas route, no training: the painted subject's propagated slices "
    "registered onto each subject (napari-action's affine registration; the preview there)",
    "action:unfused": "ACTION's network alone on the unpainted subjects (no carried prior mixed in)",
    "supervised:unfused": "the supervised network alone on the unpainted subjects (no carried prior mixed in)",
    "atlas:truth": "atlas route, upper bound: the painted subject's full truth registered",
    "atlas:action": "atlas route: ACTION's 3D result on the painted subject registered",
    "atlas:supervised": "atlas route: the supervised 3D result on the painted subject registered",
    "action:painted": "reference: ACTION on the painted subject's own unpainted slices",
    "supervised:painted": "reference: supervised on the painted subject's own unpainted slices",
    "action:ends-network": "ACTION, no structure ended beyond its propagated (or registered) slices",
    "action:ends-cut": "ACTION, every structure cut at the end of its propagated (or registered) slices",
    "supervised:ends-network": "supervised, no structure ended beyond its propagated (or registered) slices",
    "supervised:ends-cut": "supervised, every structure cut at the end of its propagated (or registered) slices",
    "action:ends-network:painted": "reference: the same on the painted subject's own unpainted slices",
    "action:ends-cut:painted": "reference: the same on the painted subject's own unpainted slices",
    "supervised:ends-network:painted": "reference: the same on the painted subject's own unpainted slices",
    "supervised:ends-cut:painted": "reference: the same on the painted subject's own unpainted slices",
}
METHOD_ORDER = tuple(METHOD_NOTES)


def cpu_model() -> str:
    """The CPU's marketing name (Linux), else what ``platform`` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine() -> dict:
    """Where a record was measured: every record carries it, since runs accumulate across machines."""
    card = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "gpu": card,
    }


def machine_line(record: dict) -> str:
    m = record["machine"]
    gpu = f", {m['gpu']}" if m.get("gpu") else ""
    return f"{m['cpu']} ({m['cpu_cores']} cores, {m['torch_threads']} torch thread(s){gpu}), torch {m['torch']}"


# --------------------------------------------------------------------------- files


def run_key(record: dict) -> tuple:
    return (
        record["cohort"],
        record["n_subjects"],
        record["cohort_seed"],
        record["orientation"],
        len(record["painted"]),
        record["k"],
        record["method"],
        record["seed"],
    )


def load_runs(out: Path) -> list[dict]:
    path = out / "results.json"
    return json.loads(path.read_text())["runs"] if path.is_file() else []


def add_run(out: Path, record: dict) -> list[dict]:
    """Store ``record`` in ``results.json`` (replacing an earlier run of the same key) and remake the tables."""
    runs = [r for r in load_runs(out) if run_key(r) != run_key(record)] + [record]
    runs.sort(key=_sort_key)
    (out / "results.json").write_text(json.dumps({"runs": runs}, indent=1))
    (out / "results.md").write_text(summary_table(runs) + "\n" + subject_table(runs))
    return runs


def _sort_key(record: dict) -> tuple:
    order = METHOD_ORDER.index(record["method"]) if record["method"] in METHOD_ORDER else len(METHOD_ORDER)
    return (*run_key(record)[:6], order, record["method"], -1 if record["seed"] is None else record["seed"])


# --------------------------------------------------------------------------- quality ranking


def average_ranks(values) -> np.ndarray:
    """Ranks from 0, tied values sharing their mean rank (Spearman's convention; scipy is not needed)."""
    values = np.asarray(values, dtype=np.float64)
    ranks = np.empty(values.size)
    ranks[np.argsort(values, kind="stable")] = np.arange(values.size)
    for value in np.unique(values):
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(x, y) -> float | None:
    """Spearman's rho: Pearson's correlation of the ranks; None when either side has no spread."""
    rx, ry = average_ranks(x), average_ranks(y)
    if len(rx) < 2 or rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


def quality_ranking(per_subject: dict) -> dict:
    """How well the quality list ranks the subjects by their true Dice.

    ``rho``: Spearman between quality score and mean Dice. ``worst_in_first_3``: whether the subject
    with the lowest Dice is among the first three of the list sorted worst (lowest score) first.
    """
    scored = {n: s for n, s in per_subject.items() if s.get("quality_score") is not None and s["mean_dice"] is not None}
    names = sorted(scored, key=lambda n: (scored[n]["quality_score"], n))
    worst = min(scored, key=lambda n: scored[n]["mean_dice"]) if scored else None
    return {
        "rho": spearman([scored[n]["quality_score"] for n in names], [scored[n]["mean_dice"] for n in names]),
        "worst_subject": worst,
        "worst_in_first_3": worst in names[:3],
        "list": names,
    }


def ranking_text(ranking: dict) -> str:
    rho = "–" if ranking["rho"] is None else f"{ranking['rho']:.2f}"
    first = "in" if ranking["worst_in_first_3"] else "NOT in"
    return f"rho {rho}, worst subject {ranking['worst_subject']} {first} the first 3"


def _quality_cells(group: list[dict]) -> str:
    """Spearman's rho (mean ± sd over seeds) and how often the worst subject is in the first 3."""
    rankings = [r["quality_ranking"] for r in group if r.get("quality_ranking")]
    if not rankings:
        return "– | – |"
    hits = sum(r["worst_in_first_3"] for r in rankings)
    return f"{mean_sd([r['rho'] for r in rankings], 2)} | {hits}/{len(rankings)} |"


# --------------------------------------------------------------------------- tables


def _groups(runs: list[dict]) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = {}
    for record in runs:
        groups.setdefault(run_key(record)[:7], []).append(record)
    return groups


def _class_names(runs: list[dict]) -> list[str]:
    first = next(iter(runs[0]["per_subject"].values()))
    return list(first["dice"])


def _per_class_mean(group: list[dict], name: str) -> str:
    """Mean over seeds and subjects of one class's Dice."""
    values = [s["dice"][name] for r in group for s in r["per_subject"].values() if s["dice"][name] is not None]
    return f"{np.mean(values):.2f}" if values else "–"


def _worst_subject(group: list[dict]) -> str:
    """The subject with the lowest Dice (mean over seeds): what the unluckiest scan of the cohort gets."""
    by_subject: dict[str, list[float]] = {}
    for record in group:
        for name, scores in record["per_subject"].items():
            by_subject.setdefault(name, []).append(scores["mean_dice"])
    name, values = min(by_subject.items(), key=lambda item: np.mean(item[1]))
    return f"{np.mean(values):.3f} ({name})"


def summary_table(runs: list[dict]) -> str:
    """One row per cohort and method: Dice over the scored subjects, mean ± sd over seeds."""
    lines = []
    for cohort in dict.fromkeys(r["cohort"] for r in runs):
        subset = [r for r in runs if r["cohort"] == cohort]
        names = _class_names(subset)
        lines += [
            f"\n**{cohort}** ({subset[0]['n_subjects']} subjects, {len(subset[0]['painted'])} painted with "
            f"k = {subset[0]['k']} slices, orientation {subset[0]['orientation']}; {machine_line(subset[-1])})\n",
            "| method | seeds | Dice (mean over subjects; mean ± sd over seeds) | worst subject | "
            + " | ".join(names)
            + " | HD95 mm | time s | quality ρ (score vs Dice) | worst in first 3 |",
            "|---|---|---|---|" + "---|" * len(names) + "---|---|---|---|",
        ]
        for key, group in _groups(subset).items():
            method = key[-1]
            lines.append(
                f"| {method} | {_seeds(group)} | **{mean_sd([r['mean_dice'] for r in group])}** | "
                f"{_worst_subject(group)} | "
                + "".join(f"{_per_class_mean(group, n)} | " for n in names)
                + f"{mean_sd([r['mean_hd95_mm'] for r in group], 1)} | "
                f"{mean_sd([r['timing']['total_s'] for r in group], 0)} | {_quality_cells(group)}"
            )
    notes = [f"- `{m}`: {text}" for m, text in METHOD_NOTES.items() if any(r["method"] == m for r in runs)]
    return "\n".join(lines) + "\n\n" + "\n".join(notes) + "\n"


def _seeds(group: list[dict]) -> str:
    seeds = [r["seed"] for r in group]
    return "any (no training)" if seeds == [None] else str(len(seeds))


def subject_table(runs: list[dict]) -> str:
    """Dice per subject (mean over seeds): where a method fails, and whether the same subjects fail for all."""
    lines = []
    for cohort in dict.fromkeys(r["cohort"] for r in runs):
        subset = [r for r in runs if r["cohort"] == cohort]
        subjects = list(
            dict.fromkeys(n for r in subset if not r["method"].endswith(":painted") for n in r["per_subject"])
        )
        lines += [
            f"\n**{cohort}, Dice per subject** (mean over seeds; orientation as stored in brackets)\n",
            "| method | " + " | ".join(_subject_header(subset, n) for n in subjects) + " |",
            "|---|" + "---|" * len(subjects),
        ]
        for key, group in _groups(subset).items():
            if key[-1].endswith(":painted"):
                continue
            cells = []
            for name in subjects:
                values = [r["per_subject"][name]["mean_dice"] for r in group if name in r["per_subject"]]
                cells.append(f"{np.mean(values):.3f}" if values else "–")
            lines.append(f"| {key[-1]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _subject_header(runs: list[dict], name: str) -> str:
    for record in runs:
        if name in record["per_subject"]:
            return f"{name.rsplit('-', 1)[-1]} ({record['per_subject'][name]['stored_orientation']})"
    return name
