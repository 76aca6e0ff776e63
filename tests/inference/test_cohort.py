"""Expanding patterns and list files, dealing files out to ranks, and gathering outcomes through a real store."""

from __future__ import annotations

import os
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from napari_action.inference.cohort import FileOutcome, RankShare, expand_images, gather_outcomes, read_image_list


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_patterns_are_sorted_names_kept_and_duplicates_dropped(tmp_path):
    b, a = touch(tmp_path / "b.nii.gz"), touch(tmp_path / "a.nii.gz")
    deep = touch(tmp_path / "sub" / "ses" / "c.nii")
    bracketed = touch(tmp_path / "scan[1].nii")  # exists as written: a file, not a pattern
    found = expand_images([str(tmp_path / "*.nii.gz"), str(b), str(tmp_path / "**" / "c.nii"), str(bracketed)])
    assert found == [a, b, deep, bracketed]


def test_one_file_spelled_differently_is_one_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    scan = touch(tmp_path / "scans" / "scan.nii.gz")
    listing = tmp_path / "lists" / "cohort.txt"
    listing.parent.mkdir()
    listing.write_text("../scans/scan.nii.gz\n")
    found = expand_images(["scans/scan.nii.gz", str(scan), "./scans//scan.nii.gz"], [listing])
    assert found == [Path("scans/scan.nii.gz")]


def test_one_file_through_a_link_is_one_file(tmp_path):
    # predict wrote the scan's mask twice, once under each name (or refused both links as sharing one output).
    scan = touch(tmp_path / "scans" / "scan.nii.gz")
    (tmp_path / "linked.nii.gz").symlink_to(scan)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "scan.nii.gz").symlink_to(scan)
    os.link(scan, tmp_path / "hard.nii.gz")
    named = [scan, tmp_path / "linked.nii.gz", tmp_path / "elsewhere" / "scan.nii.gz", tmp_path / "hard.nii.gz"]
    assert expand_images(named) == [scan]


def test_list_files_skip_comments_and_resolve_relative_paths(tmp_path):
    listing = tmp_path / "lists" / "cohort.txt"
    listing.parent.mkdir()
    listing.write_text("# header\n\n  ../scans/one.nii.gz  \n/abs/two.nii\n  # indented comment\n")
    assert read_image_list(listing) == [tmp_path / "lists" / ".." / "scans" / "one.nii.gz", Path("/abs/two.nii")]
    (tmp_path / "empty.txt").write_text("# nothing\n\n")
    with pytest.raises(ValueError, match="names no image"):
        read_image_list(tmp_path / "empty.txt")
    with pytest.raises(FileNotFoundError, match="no such list file"):
        read_image_list(tmp_path / "missing.txt")


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16"], ids=["UTF-8 with a BOM", "UTF-16"])
def test_list_files_saved_by_windows_tools_are_read(tmp_path, encoding):
    # Notepad saves UTF-8 with a byte order mark, and PowerShell's `dir -Name > list.txt` UTF-16: the mark
    # became part of the first path ("<list folder>/\ufeff/abs/one.nii.gz: no such file"), UTF-16 a codec error.
    listing = tmp_path / "cohort.txt"
    listing.write_text("/abs/one.nii.gz\r\nrelative/två.nii\r\n", encoding=encoding)
    assert read_image_list(listing) == [Path("/abs/one.nii.gz"), tmp_path / "relative" / "två.nii"]


def test_a_list_file_that_is_not_text_is_refused_by_name(tmp_path):
    # An image given as --image-list was refused as "'utf-8' codec can't decode byte 0x8b in position 1".
    not_a_list = tmp_path / "scan.nii.gz"
    not_a_list.write_bytes(b"\x1f\x8b\x08\x00 a gzip stream")
    with pytest.raises(ValueError) as refused:
        read_image_list(not_a_list)
    assert str(refused.value) == (
        f"{not_a_list}: not a text file (the list file of --image-list holds one image path per line, saved as "
        "UTF-8 or UTF-16 text); give images themselves with --image."
    )


def test_ranks_take_interleaved_shares_from_the_environment():
    files = [Path(f"{i}.nii") for i in range(7)]
    shares = [RankShare.from_environment({"RANK": str(r), "WORLD_SIZE": "3"}) for r in range(3)]
    assert [share.take(files) for share in shares] == [files[0::3], files[1::3], files[2::3]]
    assert RankShare.from_environment({}) == RankShare(0, 1, False)
    assert shares[1].prefix == "[rank 1/3] " and RankShare().prefix == ""
    with pytest.raises(ValueError, match="RANK must lie"):
        RankShare.from_environment({"RANK": "3", "WORLD_SIZE": "3"})


def test_rank_zero_gathers_every_ranks_outcomes_through_the_store(monkeypatch):
    from torch.distributed import TCPStore

    # The store torchrun's agent would host, on a free port.
    server = TCPStore("127.0.0.1", 0, None, True, timedelta(seconds=30), wait_for_workers=False)
    port = server.port
    environ = {"TORCHELASTIC_USE_AGENT_STORE": "True", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    shares = [RankShare.from_environment({**environ, "RANK": str(r), "WORLD_SIZE": "2"}) for r in (0, 1)]
    assert all(share.agent_store for share in shares)
    outcomes = [
        [FileOutcome("a.nii", "a_action.nii.gz", "written", 1.5, rank=0)],
        [FileOutcome("b.nii", "b_action.nii.gz", "failed", 0.1, "b.nii: broken", rank=1)],
    ]
    results = {}
    # Rank 0 starts first and must wait for rank 1.
    gathering = threading.Thread(target=lambda: results.update({0: gather_outcomes(outcomes[0], shares[0])}))
    gathering.start()
    results[1] = gather_outcomes(outcomes[1], shares[1])
    gathering.join(timeout=30)
    assert results[1] is None
    assert results[0] == outcomes[0] + outcomes[1]
    del server
