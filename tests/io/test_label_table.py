"""Colour tables beside exported masks: the format 3D Slicer and FreeSurfer read."""

from __future__ import annotations

import pytest

from napari_action.io.label_table import LabelEntry, label_table_text, table_path, write_label_table


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
