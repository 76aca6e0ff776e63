"""The cores a container's quota or a batch scheduler allots, read from real cgroup-like files."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from napari_action.cpu_allotment import affinity_cores, allotted_cores, quota_cores, scheduler_cores
from tests.helpers.engine import cli_train_args


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_a_cgroup_v2_quota_on_the_process_or_an_ancestor_caps_the_cores(tmp_path):
    _write(tmp_path / "cpu.max", "max 100000\n")
    _write(tmp_path / "job" / "cpu.max", "250000 100000\n")  # 2.5 cores: two threads run unthrottled
    _write(tmp_path / "job" / "step" / "cpu.max", "max 100000\n")
    assert quota_cores(tmp_path, "0::/job/step\n") == 2
    assert quota_cores(tmp_path, "0::/\n") is None  # "max": no quota


def test_a_cgroup_v1_quota_counts_and_minus_one_means_none(tmp_path):
    _write(tmp_path / "cpu,cpuacct" / "slurm" / "cpu.cfs_quota_us", "400000\n")
    _write(tmp_path / "cpu,cpuacct" / "slurm" / "cpu.cfs_period_us", "100000\n")
    assert quota_cores(tmp_path, "4:memory:/slurm\n3:cpu,cpuacct:/slurm\n") == 4
    _write(tmp_path / "cpu" / "cpu.cfs_quota_us", "-1\n")
    _write(tmp_path / "cpu" / "cpu.cfs_period_us", "100000\n")
    assert quota_cores(tmp_path, "1:cpu:/\n") is None


def test_less_than_one_core_of_quota_still_runs_one_thread(tmp_path):
    _write(tmp_path / "cpu.max", "50000 100000\n")
    assert quota_cores(tmp_path, "0::/\n") == 1


def test_unreadable_or_missing_cgroup_files_mean_no_quota(tmp_path):
    _write(tmp_path / "cpu.max", "garbage\n")
    assert quota_cores(tmp_path, "0::/\n") is None
    assert quota_cores(tmp_path / "absent", "0::/x\n") is None
    assert quota_cores(tmp_path, "") is None


@pytest.mark.parametrize(("value", "expected"), [("3", 3), ("", None), ("0", None), ("many", None)])
def test_slurm_cpus_per_task_is_read_when_it_is_a_count(value, expected):
    assert scheduler_cores({"SLURM_CPUS_PER_TASK": value}) == expected


def test_the_allotment_is_the_tightest_of_affinity_quota_and_scheduler():
    assert allotted_cores({}) <= affinity_cores()
    assert allotted_cores({"SLURM_CPUS_PER_TASK": "1"}) == 1
    assert allotted_cores({"SLURM_CPUS_PER_TASK": str(affinity_cores() + 8)}) == allotted_cores({})


@pytest.mark.skipif(affinity_cores() < 2, reason="needs a machine with 2 cores to show the cap (CI has 2)")
def test_a_slurm_job_given_one_core_trains_with_one_thread(nifti_files):
    # On a node that does not pin cores, torch started a thread per core of the node, not per core of the job.
    out = nifti_files["dir"] / "m.pt"
    env = {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}
    args = cli_train_args([nifti_files["image"]], nifti_files["labels"], out)
    result = subprocess.run(
        [sys.executable, "-m", "napari_action.cli.main", *args],
        capture_output=True,
        text=True,
        env={**env, "SLURM_CPUS_PER_TASK": "1"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "CPU, 1 thread" in result.stderr
