"""Colour tables beside exported masks: the format 3D Slicer and FreeSurfer read."""

from __future__ import annotations

import pytest

from napari_action.io.label_table import (
    LabelEntry,
    label_table_text,
    read_label_table,
    table_beside,
    table_path,
    write_label_table,
)


@pytest.mark.parametrize(
    ("mask", "table"),
    [("a/liver_action.nii.gz", "a/liver_action.ctbl"), ("b.NII", "b.ctbl"), ("c.v2_action.nii", "c.v2_action.ctbl")],
)
def test_the_table_sits_beside_its_mask_under_its_name(mask, table):
    assert table_path(mask).as_posix() == table


def test_one_line_per_value_in_order_with_one_word_names_and_clamped_colours():
    entries = [
        LabelEntry(20, " left  hippocampus ", (255.4, 0, 12, 255)),
        LabelEntry(0, "background", (0, 0, 0, 0)),
        LabelEntry(3, "", (300, -5, 7, 255)),
    ]
    lines = label_table_text(entries, "scan_action.nii.gz").splitlines()
    assert lines[0].startswith("# ") and "scan_action.nii.gz" in lines[0]
    assert lines[1:] == ["0 background 0 0 0 0", "3 class_3 255 0 7 255", "20 left_hippocampus 255 0 12 255"]
    for line in lines[1:]:  # value name R G B A: six whitespace-separated fields, as the readers split them
        value, _, *rgba = line.split()
        assert len(rgba) == 4 and value.isdigit()


def test_an_existing_table_is_replaced_only_when_allowed(tmp_path):
    path = tmp_path / "scan_action.ctbl"
    path.write_text("mine\n")
    entry = [LabelEntry(1, "liver", (1, 2, 3, 255))]
    with pytest.raises(FileExistsError):
        write_label_table(path, entry)
    assert path.read_text() == "mine\n"
    write_label_table(path, entry, overwrite=True)
    assert path.read_text().splitlines()[1] == "1 liver 1 2 3 255"


def test_a_written_table_reads_back_with_its_names_and_colours(tmp_path):
    entries = [LabelEntry(0, "background", (0, 0, 0, 0)), LabelEntry(7, "left thalamus", (10, 200, 30, 255))]
    path = write_label_table(tmp_path / "scan_action.ctbl", entries)
    assert read_label_table(path) == [entries[0], LabelEntry(7, "left_thalamus", (10, 200, 30, 255))]


def test_itk_snap_label_descriptions_and_freesurfer_lookup_tables_are_read(tmp_path):
    itk = tmp_path / "labels.txt"
    itk.write_text(
        "################################################\n"
        "# ITK-SnAP Label Description File\n"
        "#  IDX   -R-  -G-  -B-  -A--  VIS MSH  LABEL\n"
        '    0     0    0    0        0  0  0    "Clear Label"\n'
        '   12   255  128    0      0.5  1  1    "Left Putamen"\n'
    )
    assert read_label_table(itk) == [
        LabelEntry(0, "Clear Label", (0, 0, 0, 0)),
        LabelEntry(12, "Left Putamen", (255, 128, 0, 128)),
    ]
    freesurfer = tmp_path / "FreeSurferColorLUT.txt"
    freesurfer.write_text("#No. Label Name:   R   G   B   A\n\n17  Left-Hippocampus  220 216  20   0\n")
    assert read_label_table(freesurfer) == [LabelEntry(17, "Left-Hippocampus", (220, 216, 20, 0))]


@pytest.mark.parametrize("line", ["1 liver", "liver 1 2 3 255", "-3 liver 1 2 3 255", '1 255 0 0 1 1 1 "open'])
def test_a_line_of_neither_format_is_refused_naming_the_file_and_line(tmp_path, line):
    path = tmp_path / "table.ctbl"
    path.write_text(f"# comment\n2 kidney 1 2 3 255\n{line}\n")
    with pytest.raises(ValueError, match=r"table\.ctbl, line 3: .*3D Slicer.*ITK-SNAP"):
        read_label_table(path)


def test_only_a_table_under_the_masks_own_name_counts_as_its_table(tmp_path):
    mask = tmp_path / "scan_action.nii.gz"
    assert table_beside(mask) is None
    (tmp_path / "scan.ctbl").write_text("1 liver 1 2 3 255\n")
    assert table_beside(mask) is None
    write_label_table(table_path(mask), [LabelEntry(1, "liver", (1, 2, 3, 255))])
    assert table_beside(mask) == tmp_path / "scan_action.ctbl"
