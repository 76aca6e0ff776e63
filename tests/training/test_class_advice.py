"""What the trainer says about the labels and volumes it was given: classes named but painted on no slice,
volumes nobody painted stored turned against the painted ones (read in their order)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_action.training.trainer import Trainer
from tests.helpers.engine import disc_volume, sparse, tiny_config


def test_classes_named_but_painted_on_no_slice_are_named_in_the_advice():
    image, truth = disc_volume(0)  # paints the disc (1) and the ring (2)
    names = {0: "background", 1: "disc", 2: "ring", 7: "marker", 2001: "Precentral_L"}
    trainer = Trainer([image], [sparse(truth)], tiny_config(), class_names=names)
    notes = [note for note in trainer.advice if "no painted slice" in note]
    assert len(notes) == 1
    assert notes[0].startswith("2 named classes are on no painted slice")
    assert "marker, Precentral_L." in notes[0] and "disc" not in notes[0]
    assert 7 not in trainer.class_values  # what the note is about: no output for them


def test_a_long_list_of_unpainted_classes_is_cut_to_a_count():
    image, truth = disc_volume(0)
    names = {value: f"region {value}" for value in range(10, 40)}
    trainer = Trainer([image], [sparse(truth)], tiny_config(), class_names=names)
    note = next(note for note in trainer.advice if "no painted slice" in note)
    assert note.startswith("30 named classes") and "region 10, " in note and "and 22 more" in note
    assert "region 39" not in note


def test_every_named_class_painted_gives_no_such_advice():
    image, truth = disc_volume(0)
    trainer = Trainer([image], [sparse(truth)], tiny_config(), class_names={0: "background", 1: "disc", 2: "ring"})
    assert trainer.advice == []


def test_class_names_keyed_by_value_strings_name_the_painted_classes():
    # Names read from a JSON file have string keys: "1" and "2" were kept as they were, so the advice said
    # "2 named classes are on no painted slice ... disc, ring" of the two painted classes.
    image, truth = disc_volume(0)
    trainer = Trainer([image], [sparse(truth)], tiny_config(), class_names={"1": "disc", "2": "ring"})
    assert trainer.advice == []
    assert trainer.class_names == {1: "disc", 2: "ring"}


def test_class_names_given_as_a_list_are_refused_saying_how_to_make_the_mapping():
    # ["bg", "RV"] became {"b": "g", "R": "V"} without a word; longer names raised
    # "dictionary update sequence element #0 has length 10; 2 is required".
    image, truth = disc_volume(0)
    for names in (["bg", "RV"], ["background", "disc", "ring"]):
        with pytest.raises(TypeError, match=r"mapping of label value to name.*got a list.*dict\(enumerate\(names\)\)"):
            Trainer([image], [sparse(truth)], tiny_config(), class_names=names)


def test_a_volume_nobody_painted_stored_turned_against_the_painted_one_is_said_to_be_read_in_their_order():
    # The MNI152 template stored LPS beside Colin27 (RAS) scored 0.13 as stored and 0.64 reoriented: the trainer
    # reads it reoriented, and says so, so that nobody reorients the file by hand as well.
    image, truth = disc_volume(0)
    ras = np.diag([1.0, 1.0, 3.0, 1.0])
    lps = np.diag([-1.0, -1.0, 3.0, 1.0])
    volumes, labels = [image, image[::-1, ::-1].copy()], [sparse(truth)]
    turned = Trainer(volumes, labels, tiny_config(), affines=[ras, lps], names=["colin", "template"])
    [note] = [note for note in turned.advice if "'template'" in note]
    assert note.startswith("'template' is stored LPS, the painted volumes RAS: ACTION reads it in RAS order")
    assert note.endswith("gives its labels back in its own.")
    alike = Trainer(volumes, labels, tiny_config(), affines=[ras, ras], names=["colin", "other"])
    assert not [note for note in alike.advice if "'other'" in note]


@pytest.mark.parametrize("blank", ["zeros", "constant"])
def test_an_image_that_shows_nothing_is_named_in_the_advice(blank):
    # An empty export or a mask opened as the scan trained without a word, and its prediction meant nothing.
    image, truth = disc_volume(0)
    empty = np.zeros_like(image) if blank == "zeros" else np.full_like(image, 37.0)
    trainer = Trainer([image, empty], [sparse(truth), None], tiny_config(), names=["scan", "blank"])
    notes = [note for note in trainer.advice if "shows nothing" in note]
    assert len(notes) == 1 and notes[0].startswith("blank shows nothing to learn from")


def test_a_scan_with_contrast_gives_no_such_advice():
    image, truth = disc_volume(0)
    trainer = Trainer([image, disc_volume(1)[0]], [sparse(truth), None], tiny_config())
    assert not [note for note in trainer.advice if "shows nothing" in note]
