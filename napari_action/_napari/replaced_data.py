"""An image layer given new data while Predict runs (``layer.data = a crop``, another scan loaded into the layer).

The prediction job predicts the data each image held when Predict was pressed. Its result, written over the new data,
made a layer of the new shape that the old prediction did not fit (an error, an empty layer over the crop), or put the
old scan's labels over another one of the same shape. The job leaves such an image, and says so when it ends.
"""

from __future__ import annotations

from napari.layers import Image

from napari_action._napari.layers import UNCERTAINTY_KEY
from napari_action._napari.prediction_job import PredictionJob


class ReplacedImageData:
    """Follows ``layer.data = ...`` on the viewer's image layers and tells the running prediction job.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        Whose image layers to follow.
    training_state : TrainingState
        Holds the running job (:attr:`~napari_action._napari.training_state.TrainingState.job`), if any.
    """

    def __init__(self, viewer, training_state):
        self.training_state = training_state
        # Bound methods: napari holds them weakly, so nothing here outlives the widget that owns it.
        viewer.layers.events.inserted.connect(self._on_inserted)
        for layer in viewer.layers:
            self._follow(layer)

    def _on_inserted(self, event) -> None:
        self._follow(event.value)

    def _follow(self, layer) -> None:
        # An uncertainty map is given new data by every Predict: it is no image a job predicts.
        if isinstance(layer, Image) and UNCERTAINTY_KEY not in layer.metadata:
            layer.events.data.connect(self._on_data_replaced)  # napari ignores a second connection

    def _on_data_replaced(self, event) -> None:
        job = self.training_state.job
        if isinstance(job, PredictionJob):
            job.leave_changed(event.source.name)
