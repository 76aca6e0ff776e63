"""Peak memory of ``napari-action predict`` over a cohort: flat in the number of volumes?

Issue #22 asks that predicting 20 volumes keep memory flat in their number, and that one damaged
file never stop the others. ``predict`` takes the volumes one after another (``--image-list``), so
its peak should be that of the largest volume, whatever the length of the list; what grows with the
list is only each volume's quality record (class volumes and slice entropies, a few kB) kept for
the CSV written at the end.

Volumes: ``--volumes`` (20) different ``.nii.gz`` scans of 256 x 256 x 96 int16 voxels (smooth blobs
of varying size plus noise, 1 mm), the usual cohort format (read whole, labels written compressed).
Rows: the first 1, 5, 10 and 20 of them; then all 20 with the middle one replaced by a truncated
file. The model is the 4-wide U-Net of the tests, trained for two steps (``memory.py``): memory is
what is measured, and a wider network adds the same activations to every row.

Run (a few minutes on one thread; figures in docs/scaling.md)::

    nice .venv/bin/python benchmarks/cohort_memory.py --threads 1
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from memory import measured, tiny_model

SHAPE = (256, 256, 96)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--volumes", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path("bench-out/cohort-memory"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    model = tiny_model(args.work / "tiny.pt")
    scans = [write_scan(args.work / f"scan{i:02d}.nii.gz", i) for i in range(args.volumes)]
    rows = []
    for count in sorted({1, 5, 10, args.volumes} & set(range(1, args.volumes + 1))):
        rows.append(predict_row(f"{count} volumes", scans[:count], model, args))
    damaged = list(scans)
    damaged[len(scans) // 2] = truncated_copy(scans[len(scans) // 2], args.work / "damaged.nii.gz")
    rows.append(predict_row(f"{len(damaged)} volumes, one damaged", damaged, model, args))
    print_table(rows)


def write_scan(path: Path, seed: int) -> Path:
    """A scan unlike the others: blobs of another size and brightness, its own noise."""
    if path.is_file():
        return path
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    centre = SHAPE[0] / 2 + rng.uniform(-20, 20, size=2)
    base = rng.uniform(50, 110)
    volume = np.empty(SHAPE, np.int16)
    for k in range(SHAPE[2]):
        radius = base + 25 * np.sin(k / rng.uniform(12, 30))
        blob = np.hypot(yy - centre[0], xx - centre[1]) < radius
        volume[:, :, k] = (blob * rng.uniform(500, 900) + 100 + rng.normal(0, 30, SHAPE[:2])).astype(np.int16)
    nib.save(nib.Nifti1Image(volume, np.eye(4)), path)
    return path


def truncated_copy(source: Path, target: Path) -> Path:
    """The first third of a compressed scan: what a copy cut short by a full disk leaves."""
    data = source.read_bytes()
    target.write_bytes(data[: len(data) // 3])
    return target


def predict_row(name: str, scans: list[Path], model: Path, args: argparse.Namespace) -> tuple:
    listing = args.work / f"list-{len(scans)}-{name.count('damaged')}.txt"
    listing.write_text("".join(f"{scan.resolve()}\n" for scan in scans))
    out = args.work / f"out-{listing.stem}"
    command = [sys.executable, "-m", "napari_action.cli.main", "predict", "--model", str(model)]
    command += ["--image-list", str(listing), "--out-dir", str(out), "--overwrite"]
    command += ["--device", "cpu", "--threads", str(args.threads)]
    gigabytes, seconds, code = measured(command)
    written = len(list(out.glob("*.nii.gz")))
    return name, len(scans), written, gigabytes, seconds, code, " ".join(command)


def print_table(rows: list[tuple]) -> None:
    print(f"\n{'run':<28} {'volumes':>7} {'written':>7} {'peak RSS':>9} {'time':>8} {'exit':>4}")
    for name, count, written, gigabytes, seconds, code, _ in rows:
        print(f"{name:<28} {count:>7} {written:>7} {gigabytes:>7.2f} GB {seconds:>6.1f} s {code:>4}")
    print("\nCommands:")
    for name, *_, command in rows:
        print(f"  [{name}] {command}")
    stamp = time.strftime("%Y-%m-%d %H:%M")
    print(f"\n({stamp}; peak RSS = getrusage(RUSAGE_CHILDREN).ru_maxrss of a fresh wrapper per run)")


if __name__ == "__main__":
    main()
