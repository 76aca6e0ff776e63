"""Slice-wise whole-volume prediction on the source voxel grid.

Slices are taken along the training axis, normalised exactly as in training,
resized to the pixel size the network was trained at when the volume's differs
(:mod:`napari_action.data.pixel_size`), padded to a multiple of 16 (the
U-Net's total down-sampling) and cropped back; the probabilities are resized
back, so the result lies on the source voxel grid.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_action.checks import check_spacing
from napari_action.config import ENDING_RULES, check_intensity_reference
from napari_action.data.intensity import normalize_volume, pad_value
from napari_action.data.pixel_size import PIXEL_MM_KEY, resize_slices, scaled_size, slice_scale
from napari_action.data.priors import SlicePrior, structure_extents
from napari_action.data.structure_extents import StructureExtents
from napari_action.inference.postprocess import (
    SliceSmoother,
    clear_outside_extents,
    fuse_prior,
    slices_spanned,
    trim_beyond_extents,
)
from napari_action.inference.suggestions import normalized_entropy
from napari_action.io.checkpoint import Checkpoint, CheckpointError, load_checkpoint
from napari_action.label_values import smallest_label_dtype
from napari_action.networks.action_net import ActionNet
from napari_action.networks.unet import SPATIAL_MULTIPLE
from napari_action.progress import PredictionUpdate
from napari_action.runtime import autocast, is_out_of_memory, release_cached_memory, resolve_amp, resolve_device

logger = logging.getLogger(__name__)


def slice_stack(moved: np.ndarray, start: int, stop: int, context: int) -> np.ndarray:
    """Slices ``start:stop`` of an axis-first volume with ±``context`` neighbours as channels.

    Neighbours beyond the volume repeat the edge slice, as in training.
    """
    offsets = np.arange(-context, context + 1)
    index = np.clip(np.arange(start, stop)[:, None] + offsets[None, :], 0, moved.shape[0] - 1)
    return moved[index]


def build_inference_net(ckpt: Checkpoint, which: str = "teacher") -> torch.nn.Module:
    """Rebuild the network and load the ``teacher`` (default) or ``student`` weights."""
    config = ckpt.config
    net = ActionNet(config.model.in_channels, ckpt.num_classes, config.model)
    state = ckpt.teacher if which == "teacher" else ckpt.student
    try:
        net.load_state_dict(state)
    except RuntimeError as error:
        # torch lists every mismatching tensor; that list stays in __cause__.
        raise CheckpointError(
            "the checkpoint's weights do not fit its network (the file was changed after saving, or is "
            "damaged); save the model again."
        ) from error
    return net.eval()


def _saved_rule(structure_ends: str) -> str:
    """The ending rule of a saved model. A trainer saves the rule it chose; "auto" comes only from models
    saved before the setting existed (read with today's default), which get the rule for isotropic slices."""
    return "taper" if structure_ends == "auto" else structure_ends


def _pad_to_multiple(
    batch: torch.Tensor, value: float, multiple: int = SPATIAL_MULTIPLE
) -> tuple[torch.Tensor, tuple[int, int]]:
    height, width = batch.shape[-2:]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if pad_h or pad_w:
        # Pad with the volume minimum, exactly as training crops are padded
        # (data.pad_value), so the border looks the same at train and test time.
        batch = torch.nn.functional.pad(batch, (0, pad_w, 0, pad_h), value=value)
    return batch, (height, width)


class Predictor:
    """Applies a trained network to volumes, slice by slice.

    Parameters
    ----------
    net : torch.nn.Module
        Network whose ``forward`` returns an object with ``.logits`` (N, C, H, W).
    class_values : sequence of int
        Label value of each output class (class 0 first).
    axis : int
        Default slicing axis (the training axis).
    context : int
        2.5D context the network was trained with.
    device : str or torch.device
        Where to run; ``"auto"`` picks CUDA, MPS, then CPU.
    amp : bool
        Mixed precision on CUDA.
    cpu_bfloat16 : bool or None
        bfloat16 autocast on a CPU; None where the CPU computes bfloat16 natively.
    smoothing_mm, prior_decay_mm : float
        :attr:`TrainConfig.predict_smoothing_mm`, :attr:`TrainConfig.predict_prior_decay_mm`.
    structure_ends : str
        :attr:`TrainConfig.structure_ends` as the trainer resolved it: "taper", "cut" or "network" (the
        default here: no structure is ended).
    intensity_reference : str
        :attr:`TrainConfig.intensity_reference`: how volumes are normalised, as in the model's training.
    """

    def __init__(
        self,
        net: torch.nn.Module,
        class_values: Sequence[int] | np.ndarray,
        axis: int,
        *,
        context: int = 0,
        device: str | torch.device = "auto",
        amp: bool = True,
        cpu_bfloat16: bool | None = False,
        smoothing_mm: float = 0.0,
        prior_decay_mm: float = 0.0,
        structure_ends: str = "network",
        intensity_reference: str = "foreground_in_view",
        pixel_mm: Sequence[float] | None = None,
    ) -> None:
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        # Channels-last weights, as in training: oneDNN (CPU) picks faster convolutions for them. A model
        # loaded from a file arrives in the default layout; on 2 CPU cores its forward took 1/3 less.
        self.net = net.to(self.device, memory_format=torch.channels_last).eval()
        self.class_values = np.asarray(class_values, dtype=np.int64)
        self.axis = int(axis)
        self.context = int(context)
        self.amp = resolve_amp(self.device, amp, cpu_bfloat16)
        self.smoothing_mm = float(smoothing_mm)
        self.prior_decay_mm = float(prior_decay_mm)
        if structure_ends not in ENDING_RULES:
            # "auto" is a training setting: the trainer turns it into one of these from the slice thickness.
            raise ValueError(f"structure_ends must be one of {ENDING_RULES} here, got {structure_ends!r}.")
        self.structure_ends = structure_ends
        check_intensity_reference(intensity_reference)
        self.intensity_reference = intensity_reference
        self._dtype = smallest_label_dtype(self.class_values)
        # The in-plane voxel size of the training slices; slices of another size are resized to it.
        self.pixel_mm = None if pixel_mm is None else tuple(float(x) for x in pixel_mm)

    @property
    def label_dtype(self) -> np.dtype:
        """The smallest integer type that holds every label value of the model."""
        return np.dtype(self._dtype)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "auto") -> Predictor:
        """Load the inference network (the EMA teacher) from a checkpoint file."""
        return cls.for_checkpoint(load_checkpoint(path), device)

    @classmethod
    def for_checkpoint(cls, ckpt: Checkpoint, device: str | torch.device = "auto") -> Predictor:
        """Predictor of a loaded checkpoint: its EMA teacher, classes, axis, context and AMP setting."""
        return cls(
            build_inference_net(ckpt),
            ckpt.class_values,
            ckpt.axis,
            context=ckpt.config.model.context,
            device=device,
            amp=ckpt.config.amp,
            cpu_bfloat16=ckpt.config.cpu_bfloat16,
            smoothing_mm=ckpt.config.predict_smoothing_mm,
            prior_decay_mm=ckpt.config.predict_prior_decay_mm,
            structure_ends=_saved_rule(ckpt.config.structure_ends),
            intensity_reference=ckpt.config.intensity_reference,
            pixel_mm=ckpt.extra.get(PIXEL_MM_KEY),  # None in models saved before it was kept: no resizing
        )

    @torch.no_grad()
    def predict_slices(
        self,
        moved: np.ndarray,
        start: int,
        stop: int,
        tta: bool = False,
        pad: float | None = None,
        scale: tuple[float, float] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Predict slices ``start:stop`` of a normalised, axis-first volume.

        ``pad`` is the value the slices are padded with (default: the minimum of ``moved``); a caller
        that passes only a run of the volume's slices passes the whole volume's minimum. ``scale``
        (:meth:`scale_for` the volume's voxel size): the slices are enlarged by it before the network
        sees them and the probabilities shrunk back to the slices' own size.

        Returns
        -------
        labels : np.ndarray
            Label values, shape ``(stop - start, H, W)``.
        probs : np.ndarray
            Softmax probabilities, shape ``(stop - start, C, H, W)``, float32.
        """
        batch = torch.from_numpy(np.ascontiguousarray(slice_stack(moved, start, stop, self.context)))
        pad = pad_value(moved) if pad is None else pad
        probs = self._probabilities(batch.to(self.device, torch.float32), pad, scale, tta).float().cpu().numpy()
        labels = self.class_values[probs.argmax(axis=1)].astype(self._dtype)
        return labels, probs

    def _probabilities(
        self, batch: torch.Tensor, pad: float, scale: tuple[float, float] | None, tta: bool = False
    ) -> torch.Tensor:
        """Softmax probabilities of ``(N, C, H, W)`` input slices, on their own grid: enlarged by ``scale`` and
        padded for the network, then cropped and shrunk back; ``tta`` averages the two in-plane flips in."""
        own_size = tuple(batch.shape[-2:])
        if scale is not None:
            batch = resize_slices(batch, scaled_size(own_size, scale))
        batch, (height, width) = _pad_to_multiple(batch, pad)
        probs = self._softmax(batch)
        if tta:
            probs = probs + self._softmax(batch.flip(-1)).flip(-1)
            probs = probs + self._softmax(batch.flip(-2)).flip(-2)
            probs = probs / 3.0
        probs = probs[..., :height, :width]
        return resize_slices(probs, own_size) if scale is not None else probs

    def scale_for(self, spacing: Sequence[float] | None) -> tuple[float, float] | None:
        """How much a volume of voxel size ``spacing`` (mm, one per array axis) has its slices enlarged
        to be seen at the training pixel size; None: as they are (a size within 5 %, or unknown)."""
        return slice_scale(spacing, self.pixel_mm, self.axis)

    @torch.no_grad()
    def class_probabilities(
        self, channels: np.ndarray, pad: float, scale: tuple[float, float] | None = None
    ) -> np.ndarray:
        """Softmax probabilities ``(classes, H, W)`` of one normalised slice given as input channels ``(C, H, W)``.

        ``scale``: as in :meth:`predict_slices`, the slice is seen enlarged by it and its probabilities
        shrunk back to its own size.
        """
        batch = torch.from_numpy(np.ascontiguousarray(channels[None], dtype=np.float32)).to(self.device)
        return self._probabilities(batch, pad, scale)[0].float().cpu().numpy()

    def _softmax(self, batch: torch.Tensor) -> torch.Tensor:
        with autocast(self.device, self.amp):
            logits = self.net(batch).logits
        return torch.softmax(logits.float(), dim=1)

    def iter_predict(
        self,
        volume: np.ndarray | Sequence,
        *,
        axis: int | None = None,
        batch_size: int = 8,
        tta: bool = False,
        volume_index: int = 0,
        normalized: bool = False,
        prior: SlicePrior | None = None,
        prior_share: float = 1.0,
        spacing: Sequence[float] | None = None,
        extents: StructureExtents | None = None,
        with_confidence: bool = True,
    ) -> Iterator[PredictionUpdate]:
        """Predict a whole volume, yielding progress after every batch of slices.

        Probabilities are smoothed across slices (:attr:`smoothing_mm`) and,
        with a ``prior`` (what the labeled slices of this volume say about the
        others: :mod:`napari_action.data.priors`), mixed with it near labeled
        slices (:attr:`prior_decay_mm`); labeled slices then keep their labels.
        ``prior_share`` scales the prior's confidence in that mix (a prior carried
        from another volume counts for less: :data:`~napari_action.training.prior_mix.CARRIED_SHARE`).
        When the prior is their propagation, every structure is ended beyond the
        slices it propagates to as :attr:`structure_ends` says
        (:func:`~napari_action.inference.postprocess.trim_beyond_extents`);
        ``extents`` do the same for a volume whose prior does not tell (one
        nobody painted: :meth:`~napari_action.training.trainer.Trainer.structure_extents`).
        ``spacing`` (voxel size in mm, one per array axis; default 1 mm) turns
        millimetres into slices, and slices of another in-plane voxel size than the
        training slices' are seen at theirs (:meth:`scale_for`). The last
        update has ``done=True`` and carries ``labels`` (label values, the
        volume's own axis order and shape) and ``confidence`` (max softmax
        probability; None with ``with_confidence=False``: 4 bytes a voxel a caller that only needs the
        entropy, as napari's layers, does without) and ``entropy`` (normalised to [0, 1]) volumes.

        Raises
        ------
        ValueError
            ``volume`` is not 3D, holds NaN or infinite voxels (unless ``normalized``), or ``spacing``
            is not three positive, finite voxel sizes.
        TypeError
            ``volume`` is a file name, not an array.
        """
        if isinstance(volume, (str, os.PathLike)):  # np.asarray made it a volume "of shape ()"
            raise TypeError(
                f"Predict an image array, not a file name ({str(volume)!r}): read it with "
                "image, meta = load_volume(path), then predict(image, spacing=meta.zooms)."
            )
        volume = np.asarray(volume)  # a nested list too; kept whole anyway
        if volume.ndim != 3:
            raise ValueError(f"Expected a 3D volume, got shape {volume.shape}.")
        axis = self.axis if axis is None else axis
        # Checked before anything is computed: a thickness of 0 or NaN would divide the smoothing by it.
        spacing = None if spacing is None else check_spacing(spacing, 3)
        if normalized:
            data = volume.astype(np.float32, copy=False)
        else:
            data = normalize_volume(volume, reference=self.intensity_reference)
        moved = np.moveaxis(data, axis, 0)
        n_slices = moved.shape[0]
        labels = np.zeros(moved.shape, self._dtype)
        confidence = np.zeros(moved.shape, np.float32) if with_confidence else None
        entropy = np.zeros(moved.shape, np.float32)
        thickness = 1.0 if spacing is None else float(spacing[axis])
        scale = slice_scale(spacing, self.pixel_mm, axis)
        smoother = SliceSmoother(slices_spanned(self.smoothing_mm, thickness), n_slices)
        decay = self.prior_decay_slices(thickness)
        extents = self.ending_extents(prior, extents)
        done = 0
        start = 0
        while start < n_slices:
            stop = min(start + batch_size, n_slices)
            try:
                _, probs = self.predict_slices(moved, start, stop, tta, scale=scale)
            except Exception as error:
                batch_size = self.smaller_batch(batch_size, error)
                continue  # the same slices again, fewer at a time
            for offset, slice_probs in enumerate(probs):
                for index, smoothed in smoother.push(start + offset, slice_probs):
                    final = with_prior(smoothed, prior, index, decay, share=prior_share)
                    labels[index] = self.class_values[final.argmax(axis=0)]
                    if confidence is not None:
                        confidence[index] = final.max(axis=0)
                    entropy[index] = normalized_entropy(final, axis=0, check=False)
                    done = index + 1
            start = stop
            yield PredictionUpdate(volume_index, done, n_slices)
        if self.structure_ends != "network":
            trim_beyond_extents(labels, extents, self.class_values, self.structure_ends)
        yield PredictionUpdate(
            volume_index,
            n_slices,
            n_slices,
            done=True,
            labels=np.moveaxis(labels, 0, axis),
            confidence=None if confidence is None else np.moveaxis(confidence, 0, axis),
            entropy=np.moveaxis(entropy, 0, axis),
            axis=axis,
        )

    def prior_decay_slices(self, thickness_mm: float) -> float:
        """:attr:`prior_decay_mm` in slices of ``thickness_mm`` (micrometre slices count as 1 mm ones)."""
        return slices_spanned(self.prior_decay_mm, thickness_mm)

    def extents_of(self, prior: SlicePrior | None) -> StructureExtents | None:
        """Each structure's extent on a volume with this prior, beyond which its end is looked for (None: not)."""
        return None if self.structure_ends == "network" else structure_extents(prior)

    def ending_extents(
        self, prior: SlicePrior | None, extents: StructureExtents | None = None
    ) -> StructureExtents | None:
        """The extents :meth:`iter_predict` ends each structure beyond (unless :attr:`structure_ends` is "network"):
        the prior's own (:meth:`extents_of`), else ``extents``, given for a volume whose prior does not tell."""
        own = self.extents_of(prior)
        return own if own is not None else extents

    def smaller_batch(self, batch_size: int, error: Exception) -> int:
        """Half as many slices per batch after the accelerator ran out of memory; re-raise anything else."""
        if not is_out_of_memory(error):
            raise error
        release_cached_memory(self.device)
        if batch_size == 1:
            raise MemoryError(
                f"{self.device.type.upper()} memory is too small for even one slice of this volume: "
                "predict on the CPU (device cpu) or close other programs that use the GPU."
            ) from error
        logger.warning("%s memory full: predicting %d slices at a time", self.device.type.upper(), batch_size // 2)
        return batch_size // 2

    def predict(self, volume: np.ndarray, **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
        """Whole-volume ``(labels, confidence)``; see :meth:`iter_predict`."""
        for update in self.iter_predict(volume, **kwargs):
            if update.done:
                return update.labels, update.confidence
        raise RuntimeError("prediction ended without a result")  # unreachable: the loop always ends done


def with_prior(
    probs: np.ndarray,
    prior: SlicePrior | None,
    index: int,
    decay: float,
    extents: StructureExtents | None = None,
    share: float = 1.0,
) -> np.ndarray:
    """Slice ``index``'s ``(C, H, W)`` probabilities mixed with the prior there (:func:`fuse_prior`), if it reaches it,
    less the structures ``extents`` end before the slice (:func:`clear_outside_extents`).

    ``decay`` is in slices (:meth:`Predictor.prior_decay_slices`); ``share`` scales the
    prior's confidence.
    """
    if prior is not None and decay > 0 and prior.covered[index]:
        classes, confidence = prior.classes_at(index), prior.confidence_at(index) * share
        probs = fuse_prior(probs, classes, int(prior.distance[index]), decay, confidence)
    return clear_outside_extents(probs, extents, index)


def predict_volume(model: Predictor | str | Path, volume: np.ndarray, **kwargs: Any) -> Iterator[PredictionUpdate]:
    """Predict ``volume`` with a :class:`Predictor` or a checkpoint path."""
    predictor = model if isinstance(model, Predictor) else Predictor.from_checkpoint(model)
    return predictor.iter_predict(volume, **kwargs)
