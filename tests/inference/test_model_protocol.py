"""The model protocols: a trainer can predict and train, a model loaded from a checkpoint only predict."""

from __future__ import annotations

from napari_action.inference.loaded_model import model_from_checkpoint
from napari_action.inference.model_protocol import SegmentationModel, TrainableModel


def test_trainer_and_loaded_model_share_the_model_protocol(supervised_trainer):
    model = model_from_checkpoint(supervised_trainer.checkpoint(), device="cpu")
    assert isinstance(supervised_trainer, SegmentationModel) and isinstance(supervised_trainer, TrainableModel)
    assert isinstance(model, SegmentationModel) and not isinstance(model, TrainableModel)
