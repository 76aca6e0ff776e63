"""Peak memory of ``napari-action predict`` (and train) on large synthetic volumes.

Question: does prediction stay within 2 GB, flat in the number of slices, when the volume is
read and the labels written slice by slice? Each measurement runs in a fresh child process;
its peak resident memory is ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` taken by a wrapper
process whose only child is the measured command (so no earlier run's peak leaks in).

Volumes: 512 x 512 x N int16 (N = 300 and 600 by default), smooth blobs plus noise, 0.5 x 0.5 x 1 mm,
stored as uncompressed ``.nii``, as zarr (``napari-action convert``, 16-slice chunks along
axis 2) and as ``.nii.gz``. The model slices along axis 2 (whole 512 x 512 planes).

Rows:

* ``predict nii -> nii``, ``predict zarr -> zarr``: the slice-by-slice path (``--output-format``);
* ``predict nii.gz -> nii.gz``: the command line on a compressed file (volume held whole in its
  stored type, labels gathered in memory and compressed at the end);
* ``in-memory Predictor.predict``: the widget's path (float32 copy of the volume, plus labels,
  confidence and entropy volumes), for comparison;
* ``train`` (with ``--training``): ``napari-action train --steps 1 --warmup 0 --supervised-start 0`` with one painted
  slice (labels as ``.nii.gz``), on the ``.nii.gz`` (the volume loaded whole) and on the ``.nii``
  and the zarr store (read slice by slice while training).

The network is the 4-wide U-Net of the tests (``base_width=4``), trained for two steps: memory
is what is measured; the network's activations for a batch of 8 planes of 512² grow with its
width (the cpu preset's is 16) but not with the number of slices.

Run (about 20 minutes on one thread of two shared cores; figures in docs/scaling.md)::

    nice .venv/bin/python benchmarks/memory.py --threads 1
    nice .venv/bin/python benchmarks/memory.py --threads 1 --slices 300 600 --training
    nice .venv/bin/python benchmarks/memory.py --threads 1 --slices 300 600 --training-only
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PLANE = (512, 512)
ZOOMS = (0.5, 0.5, 1.0)
_MEASURE = """
import resource, subprocess, sys, time
started = time.perf_counter()
code = subprocess.run(sys.argv[1:]).returncode
print(f"{resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss} {time.perf_counter() - started} {code}")
"""
_IN_MEMORY = """
import sys, torch
torch.set_num_threads(int(sys.argv[3]))
from napari_action.inference.loaded_model import load_model
from napari_action.io.nifti import load_volume
model = load_model(sys.argv[1], device="cpu")
volume, meta = load_volume(sys.argv[2])
labels, confidence = model.predictor.predict(volume, spacing=meta.zooms)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, nargs="+", default=[300, 600])
    parser.add_argument("--work", type=Path, default=Path("/tmp/napari-action-memory"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--training", action="store_true", help="also measure one training step")
    parser.add_argument("--training-only", action="store_true", help="measure training, not prediction")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    model = None if args.training_only else tiny_model(args.work / "model.pt")
    rows = []
    for n_slices in args.slices:
        files = make_volumes(args.work, n_slices, args.threads)
        if model is not None:
            rows += measure_prediction(files, model, args, n_slices)
        if args.training or args.training_only:
            rows += measure_training(files, args, n_slices)
        for path in files.values():  # a 600-slice set takes ~1 GB of disk
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    print_table(rows)


def tiny_model(path: Path) -> Path:
    """A 4-wide U-Net trained for two steps on a small disc volume (axis 2)."""
    if path.is_file():
        return path
    sys.path.insert(0, str(ROOT))
    from napari_action.training.trainer import Trainer
    from tests.helpers import engine

    image, truth = engine.disc_volume(0)
    trainer = Trainer([image], [engine.sparse(truth)], engine.tiny_config(method="supervised", steps_stage3=2))
    trainer.train()
    trainer.save_checkpoint(path)
    return path


def make_volumes(work: Path, n_slices: int, threads: int) -> dict[str, Path]:
    """The same int16 volume as ``.nii``, ``.zarr`` and ``.nii.gz``, and its one-slice labels (``.nii.gz``)."""
    nii = work / f"vol{n_slices}.nii"
    write_uncompressed(nii, n_slices)
    gz = work / f"vol{n_slices}.nii.gz"
    with open(nii, "rb") as source, gzip.open(gz, "wb", compresslevel=1) as target:
        shutil.copyfileobj(source, target, 1 << 24)
    store = work / f"vol{n_slices}.zarr"
    shutil.rmtree(store, ignore_errors=True)
    run_cli(["convert", "--image", str(nii), "--out", str(store), "--axis", "2"])
    labels = np.zeros((*PLANE, n_slices), np.uint8)
    labels[200:300, 200:300, n_slices // 2] = 1
    painted = work / f"vol{n_slices}_labels.nii.gz"
    nib.save(nib.Nifti1Image(labels, np.diag([*ZOOMS, 1.0])), painted)
    return {"nii": nii, "nii.gz": gz, "zarr": store, "labels": painted}


def write_uncompressed(path: Path, n_slices: int) -> None:
    """Header, then slabs of slices through a memory map: the benchmark itself never holds the volume."""
    shape = (*PLANE, n_slices)
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.int16)
    header.set_qform(np.diag([*ZOOMS, 1.0]), code=2)
    header.set_sform(np.diag([*ZOOMS, 1.0]), code=2)
    header.set_data_offset(352)
    with open(path, "wb") as stream:
        header.write_to(stream)
        stream.write(bytes(352 - stream.tell()))
        stream.truncate(352 + int(np.prod(shape)) * 2)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[: PLANE[0], : PLANE[1]]
    data = np.memmap(path, np.int16, "r+", 352, shape, order="F")
    for k in range(n_slices):
        radius = 150 + 60 * np.sin(k / 40.0)
        blob = np.hypot(yy - 256, xx - 256) < radius
        data[:, :, k] = (blob * 800 + 100 + rng.normal(0, 30, PLANE)).astype(np.int16)
    data.flush()
    del data


def run_cli(arguments: list[str]) -> None:
    subprocess.run([sys.executable, "-m", "napari_action.cli.main", *arguments], check=True, cwd=ROOT)


def measured(command: list[str]) -> tuple[float, float, int]:
    """Peak resident memory (GB), seconds and exit code of ``command`` run in a fresh process."""
    result = subprocess.run(
        [sys.executable, "-c", _MEASURE, *command], capture_output=True, text=True, check=True, cwd=ROOT
    )
    kilobytes, seconds, code = result.stdout.split()[-3:]
    return int(kilobytes) / 1e6, float(seconds), int(code)


def measure_prediction(files: dict[str, Path], model: Path, args: argparse.Namespace, n_slices: int) -> list[tuple]:
    out = args.work / "out"
    rows = []
    for source, fmt in (("nii", "nii"), ("zarr", "zarr"), ("nii.gz", "nii.gz")):
        shutil.rmtree(out, ignore_errors=True)
        command = [sys.executable, "-m", "napari_action.cli.main", "predict", "--model", str(model)]
        command += ["--image", str(files[source]), "--out-dir", str(out), "--output-format", fmt]
        command += ["--device", "cpu", "--threads", str(args.threads)]
        rows.append((f"predict {source} -> {fmt}", n_slices, *measured(command), " ".join(command)))
    in_memory = [sys.executable, "-c", _IN_MEMORY, str(model), str(files["nii.gz"]), str(args.threads)]
    rows.append(("in-memory Predictor.predict", n_slices, *measured(in_memory), "(see _IN_MEMORY)"))
    shutil.rmtree(out, ignore_errors=True)
    return rows


def measure_training(files: dict[str, Path], args: argparse.Namespace, n_slices: int) -> list[tuple]:
    rows = []
    for source in ("nii.gz", "nii", "zarr"):
        for method in ("supervised", "action"):
            command = [sys.executable, "-m", "napari_action.cli.main", "train", "--image", str(files[source])]
            command += ["--labels", str(files["labels"]), "--method", method, "--steps", "1"]
            command += ["--warmup", "0", "--supervised-start", "0"]
            command += ["--device", "cpu", "--threads", str(args.threads), "--axis", "2"]
            command += ["--out", str(args.work / "trained.pt"), "--overwrite"]
            name = f"train {source} --method {method} (1 step)"
            rows.append((name, n_slices, *measured(command), " ".join(command)))
    return rows


def print_table(rows: list[tuple]) -> None:
    print(f"\n{'run':<36} {'slices':>6} {'peak RSS':>9} {'time':>8} {'exit':>4}")
    for name, n_slices, gigabytes, seconds, code, _ in rows:
        print(f"{name:<36} {n_slices:>6} {gigabytes:>7.2f} GB {seconds:>6.1f} s {code:>4}")
    print("\nCommands:")
    for name, n_slices, *_, command in rows:
        print(f"  [{name}, {n_slices}] {command}")
    stamp = time.strftime("%Y-%m-%d %H:%M")
    print(f"\n({stamp}; peak RSS = getrusage(RUSAGE_CHILDREN).ru_maxrss of a fresh wrapper per run)")


if __name__ == "__main__":
    main()
