"""Training on two processes: real ``torchrun`` runs with Gloo on the CPU, and the helpers in real process groups.

Each ``torchrun`` run trains the CLI's CPU budget for a few steps on two
ranks; every rank writes its final state (``NAPARI_ACTION_RANK_STATE_DIR``),
and the test compares the ranks tensor for tensor. Without gradient
synchronisation the ranks, which draw different crops, end with different
weights; without gathered queues their queues differ and hold half the entries.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from napari_action.config import TrainConfig
from napari_action.inference.loaded_model import load_model
from napari_action.training import distributed
from napari_action.training.trainer import Trainer
from tests.helpers.engine import disc_volume, sparse, tiny_config, write_nifti

REPO = Path(__file__).resolve().parents[2]
WARMUP = 1  # steps of each of ACTION's warm-up stages in the torchrun runs
RANKS = 2


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("distributed")
    image, truth = disc_volume(0)
    other, _ = disc_volume(1)
    return {
        "image": write_nifti(folder / "image.nii.gz", image),
        "other": write_nifti(folder / "other.nii.gz", other),
        "labels": write_nifti(folder / "labels.nii.gz", sparse(truth)),
        "array": image,
    }


def torchrun_train(files, method: str, run_dir: Path) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc-per-node 2 -m napari_action.cli.main train ...``, one thread per rank."""
    command = [
        *(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(RANKS)),
        *("-m", "napari_action.cli.main", "train"),
        *("--image", str(files["image"]), "--image", str(files["other"]), "--labels", str(files["labels"])),
        *("--method", method, "--device", "cpu", "--steps", "3", "--warmup", str(WARMUP), "--threads", "1"),
        *("--supervised-start", "1"),  # the cpu preset's first stage: it leaves the queues alone
        *("--out", str(run_dir / "out" / "model.pt")),
    ]
    environ = {**os.environ, distributed.RANK_STATE_ENV: str(run_dir / "ranks"), "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, cwd=REPO, env=environ, capture_output=True, text=True, timeout=240)


@pytest.mark.parametrize("method", ["action", "supervised", "mean-teacher"])
def test_two_ranks_train_one_model_and_rank_zero_writes_it(files, method, tmp_path):
    result = torchrun_train(files, method, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]

    rank0, rank1 = (torch.load(tmp_path / "ranks" / f"rank{k}.pt") for k in range(RANKS))
    assert rank0.keys() == rank1.keys() and any(key.startswith("nets.student.") for key in rank0)
    differing = [key for key in rank0 if not torch.equal(rank0[key], rank1[key])]
    assert differing == [], "students, teachers and queues must be identical on both ranks"

    if method == "action":
        # Stages i and ii each enqueued the teacher embeddings of both ranks' crops.
        cpu = TrainConfig.preset("cpu")
        per_rank_step = cpu.batch_labeled + cpu.batch_unlabeled
        assert int(rank0["global_queue.count"]) == RANKS * per_rank_step * 2 * WARMUP

    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["model.pt"]
    assert result.stdout.count("Model written to") == 1
    # Only rank 0 announces the run and draws progress.
    assert result.stderr.count(f"Training {method} on 2 processes (torchrun)") == 1
    last_loss = re.findall(r"loss\s+([^\s,]+)", result.stderr)[-1]
    assert math.isfinite(float(last_loss))

    model = load_model(tmp_path / "out" / "model.pt", device="cpu")
    final = list(model.predict_volume(files["array"]))[-1]
    assert final.done and final.labels.shape == files["array"].shape
    assert set(np.unique(final.labels)) <= {0, 1, 2}
    assert np.isfinite(final.confidence).all()


def test_a_single_process_creates_no_process_group_and_trains_as_before():
    image, truth = disc_volume(0)

    def losses(trainer):
        return [p.losses for p in trainer.train()]

    trainer = Trainer([image], [sparse(truth)], tiny_config())
    first = losses(trainer)
    assert trainer.distributed == distributed.SINGLE_PROCESS
    assert first == losses(Trainer([image], [sparse(truth)], tiny_config()))
    assert not dist.is_initialized()
    student_pass = trainer._passes.student_pass(trainer.nets.student)
    assert not isinstance(student_pass, torch.nn.parallel.DistributedDataParallel)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, distributed.SINGLE_PROCESS),
        ({"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0"}, distributed.SINGLE_PROCESS),
        ({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}, distributed.DistributedContext(3, 4, 1)),
    ],
)
def test_context_comes_from_torchruns_variables(environ, expected):
    assert distributed.context_from_environment(environ) == expected


def test_each_rank_takes_the_gpu_of_its_local_rank():
    second = distributed.DistributedContext(rank=3, world_size=4, local_rank=1)
    assert distributed.device_for_rank(torch.device("cuda"), second) == torch.device("cuda", 1)
    assert distributed.device_for_rank(torch.device("cuda", 0), second) == torch.device("cuda", 0)
    assert distributed.device_for_rank(torch.device("cpu"), second) == torch.device("cpu")
    assert distributed.device_for_rank(torch.device("cuda"), distributed.SINGLE_PROCESS) == torch.device("cuda")


def test_gpus_talk_through_nccl_where_torch_has_it_and_through_gloo_elsewhere(monkeypatch):
    monkeypatch.setattr(torch.distributed, "is_nccl_available", lambda: True)  # a Linux CUDA build
    assert distributed.backend_for(torch.device("cuda", 1)) == "nccl"
    assert distributed.backend_for(torch.device("cpu")) == "gloo"
    # A Windows CUDA build has no NCCL: init_process_group("nccl") failed there before the first step.
    monkeypatch.setattr(torch.distributed, "is_nccl_available", lambda: False)
    assert distributed.backend_for(torch.device("cuda", 1)) == "gloo"


def _helpers_on_rank(rank: int, world_size: int, store: str, results: str) -> None:
    """Run the collective helpers on one rank of a Gloo group and save what each returned."""
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size)
    context = distributed.DistributedContext(rank, world_size, rank)
    try:
        rows = distributed.gather_rows(torch.full((2, 3), float(rank)), context)
        # Rank 1's loss diverged: every rank must see it.
        losses = distributed.average_values(
            {"sup": 1.0 + rank, "total": [2.0, math.nan][rank]}, context, torch.device("cpu")
        )
        norm = torch.nn.BatchNorm1d(2)
        norm.running_mean.fill_(float(rank))
        distributed.average_buffers(norm, context)
        weights = torch.nn.Linear(2, 2)
        torch.nn.init.constant_(weights.weight, float(rank))
        distributed.broadcast_module(weights, context)
        torch.save(
            {"rows": rows, "losses": losses, "mean": norm.running_mean, "weight": weights.weight.detach()},
            Path(results) / f"rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


def test_collective_helpers_agree_across_two_real_processes(tmp_path):
    mp.spawn(_helpers_on_rank, args=(RANKS, str(tmp_path / "store"), str(tmp_path)), nprocs=RANKS)
    for rank in range(RANKS):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        np.testing.assert_array_equal(got["rows"][:, 0], [0.0, 0.0, 1.0, 1.0])  # rank order
        assert got["losses"]["sup"] == 1.5 and math.isnan(got["losses"]["total"])
        np.testing.assert_array_equal(got["mean"], [0.5, 0.5])
        np.testing.assert_array_equal(got["weight"], np.zeros((2, 2)))  # rank 0's
