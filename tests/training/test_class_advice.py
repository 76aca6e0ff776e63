"""Classes the user named but painted on no slice: the trainer says it cannot learn them."""

from __future__ import annotations

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
