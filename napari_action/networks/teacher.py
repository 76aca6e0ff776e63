"""The EMA teacher of ACTION and the memory queues of its distillation losses.

The teacher is an exponential moving average of the student (Tarvainen &
Valpola 2017; You et al., IPMI 2023): never trained by backprop, always in eval
mode, updated once per step — unlike the reference code (docs/method.md,
"Where we deliberately differ", differences 1-3).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from napari_action.config import ModelConfig
from napari_action.networks.action_net import ActionNet


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """Exponential moving average ``θ_t ← m·θ_t + (1 − m)·θ_s`` (Tarvainen & Valpola, 2017).

    Floating-point buffers (BatchNorm running statistics) are averaged the same
    way: the teacher always runs in ``eval()`` mode, so its running statistics
    must come from the student, and averaging them keeps them consistent with
    the averaged weights. Integer buffers (``num_batches_tracked``) are copied.

    Parameters
    ----------
    teacher, student : nn.Module
        Modules with identical structure.
    momentum : float
        ``m`` in ``[0, 1]``; 0 copies the student.
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum}.")
    averaged, copied = _paired_tensors(teacher, student)
    # One multi-tensor kernel per list rather than one per tensor: a stage-iii step on a GPU spent a
    # quarter of its time launching the ~140 per-tensor updates (docs/benchmarks.md, "GPU").
    if averaged[0]:
        torch._foreach_lerp_(averaged[0], averaged[1], 1.0 - momentum)
    if copied[0]:
        torch._foreach_copy_(copied[0], copied[1])


def _paired_tensors(teacher: nn.Module, student: nn.Module) -> tuple[tuple[list, list], tuple[list, list]]:
    """(teacher, student) tensors to average (floating point) and to copy (integer buffers), checked to match."""
    averaged: tuple[list[Tensor], list[Tensor]] = ([], [])
    copied: tuple[list[Tensor], list[Tensor]] = ([], [])
    for kind in ("named_parameters", "named_buffers"):
        teacher_tensors, student_tensors = dict(getattr(teacher, kind)()), dict(getattr(student, kind)())
        if teacher_tensors.keys() != student_tensors.keys():
            raise ValueError("teacher and student have different parameters or buffers.")
        for name, s in student_tensors.items():
            t = teacher_tensors[name]
            if t.shape != s.shape:
                raise ValueError(f"Shape mismatch for {name!r}: {tuple(t.shape)} vs {tuple(s.shape)}.")
            target = averaged if t.is_floating_point() else copied
            target[0].append(t)
            target[1].append(s.detach().to(t.dtype))
    return averaged, copied


class StudentPass(nn.Module):
    """The student's forward and every head a training step needs, as one module call.

    The stages used to call ``student(x)`` and then its heads
    (``global_embedding``, ``local_embedding``, ``representation``) as separate
    methods. :class:`~torch.nn.parallel.DistributedDataParallel` only prepares
    the gradient synchronisation of what happens inside one ``forward``, and
    with ``find_unused_parameters`` it tells used from unused parameters by
    walking back from that forward's outputs: heads applied outside it would
    be missed, or their gradients reduced twice. So the step asks for exactly
    the outputs its loss uses, and nothing else is returned: a head (or the
    decoder, in stage i) that no loss reaches is then unused and DDP skips it.

    In a single process this is the same computation in the same order as
    calling the student and its heads directly (the heads draw no random
    numbers), so the numbers do not change.

    Parameters
    ----------
    student : ActionNet
        The network trained by backprop; held, not copied.
    """

    def __init__(self, student: ActionNet):
        super().__init__()
        self.student = student

    def forward(
        self,
        images: Tensor,
        *,
        logits: bool = True,
        global_embedding: bool = False,
        local_embedding: bool = False,
        representation_stride: int | None = None,
    ) -> dict[str, Tensor]:
        """Run the student on ``images``; return only the outputs asked for.

        Parameters
        ----------
        images : Tensor
            ``(B, C, H, W)`` batch.
        logits : bool
            Return the class scores ``"logits"``.
        global_embedding : bool
            Return ``"global"``, the projected global embedding (see :meth:`ActionNet.global_embedding`).
        local_embedding : bool
            Return ``"local"``, the projected window descriptors (see :meth:`ActionNet.local_embedding`).
        representation_stride : int, optional
            Return ``"representation"``, the per-pixel embeddings on the grid of
            ``images`` subsampled by this stride (see :meth:`ActionNet.representation`).

        Returns
        -------
        dict of str to Tensor
            The requested outputs, keyed as above.
        """
        out = self.student(images)
        wanted: dict[str, Tensor] = {}
        if logits:
            wanted["logits"] = out.logits
        if global_embedding:
            wanted["global"] = self.student.global_embedding(out.bottleneck, predict=True)
        if local_embedding:
            wanted["local"] = self.student.local_embedding(out.logits, predict=True)
        if representation_stride is not None:
            grid = tuple(size // representation_stride for size in images.shape[2:])
            wanted["representation"] = self.student.representation(out.pyramid, grid)
        return wanted


def _frozen_copy(module: nn.Module) -> nn.Module:
    """Deep copy of ``module`` in eval mode with gradients disabled."""
    frozen = copy.deepcopy(module)
    for p in frozen.parameters():
        p.requires_grad_(False)
        p.grad = None
    return frozen.eval()


class StudentTeacher(nn.Module):
    """Student :class:`ActionNet` and its EMA teacher.

    The teacher (heads included) is an EMA copy of the student that stays in
    ``eval()`` mode (no dropout, running BatchNorm statistics) and never
    requires gradients (docs/method.md, differences 1 and 2). Build
    the optimiser from ``self.student.parameters()``.

    Parameters
    ----------
    in_channels, num_classes, model_config, spatial_dims
        The student's, as for :class:`ActionNet` (the teacher copies it).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        model_config: ModelConfig | None = None,
        spatial_dims: int = 2,
    ):
        super().__init__()
        self.student = ActionNet(in_channels, num_classes, model_config, spatial_dims)
        self.teacher = _frozen_copy(self.student)

    @property
    def num_classes(self) -> int:
        """Number of output classes."""
        return self.student.num_classes

    def train(self, mode: bool = True) -> StudentTeacher:
        """Set the student's mode; the teacher always stays in eval mode."""
        super().train(mode)
        self.teacher.eval()
        return self

    def ema_update(self, momentum: float) -> None:
        """One EMA step of the teacher towards the student; call once per optimiser step."""
        ema_update(self.teacher, self.student, momentum)

    def sync_teacher(self) -> None:
        """Copy the student into the teacher (start of stage iii)."""
        self.teacher.load_state_dict(self.student.state_dict())

    def add_classes(self, n_new: int) -> int:
        """Add ``n_new`` classes, keep the learned weights and re-sync the teacher.

        Parameters are replaced, so the optimiser must be rebuilt, and so must
        the local queue (its embedding size follows the number of classes).

        Returns
        -------
        int
            The new number of classes.
        """
        self.student.add_classes(n_new)
        self.teacher = _frozen_copy(self.student)
        return self.num_classes


class EmbeddingQueue(nn.Module):
    """FIFO ring buffer of L2-normalised teacher embeddings (the anchors).

    The memory bank of ISD / MoCo (He et al., CVPR 2020) used by ACTION's
    global and local distillation. Only entries written so far are returned by
    :meth:`entries` (no random initial anchors), so the distillation loss is
    skipped until :attr:`ready`.

    Parameters
    ----------
    size : int
        Capacity ``K``.
    dim : int
        Embedding size.
    """

    def __init__(self, size: int, dim: int):
        super().__init__()
        if size < 1 or dim < 1:
            raise ValueError(f"size and dim must be >= 1, got size={size}, dim={dim}.")
        self.size = size
        self.register_buffer("queue", torch.zeros(size, dim))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    @property
    def dim(self) -> int:
        """Embedding size."""
        return self.queue.shape[1]

    @property
    def ready(self) -> bool:
        """True once at least one embedding has been enqueued."""
        return int(self.count) > 0

    def __len__(self) -> int:
        return int(self.count)

    def entries(self) -> Tensor:
        """The filled entries, ``(len(self), dim)``, detached."""
        return self.queue[: int(self.count)].detach()

    @torch.no_grad()
    def enqueue(self, x: Tensor) -> None:
        """Append ``x`` of shape ``(..., dim)`` (normalised, detached), overwriting the oldest."""
        if x.dim() < 1 or x.shape[-1] != self.dim:
            raise ValueError(f"enqueue expects (..., {self.dim}), got shape {tuple(x.shape)}.")
        x = F.normalize(x.detach().reshape(-1, self.dim), dim=1)
        if x.shape[0] > self.size:
            x = x[-self.size :]
        n = x.shape[0]
        ptr = int(self.ptr)
        index = (ptr + torch.arange(n, device=self.queue.device)) % self.size
        self.queue[index] = x.to(self.queue.dtype)
        self.ptr.fill_((ptr + n) % self.size)
        self.count.fill_(min(int(self.count) + n, self.size))


LOCAL_WINDOWS = 36  # 6 x 6 windows of size/4 with stride size/8 (heads.LocalHead)


def local_queue(entries_per_window: int, num_classes: int) -> EmbeddingQueue:
    """The local distillation's queue: ``entries_per_window`` descriptors of each window of a crop.

    A descriptor holds the 8 × 8 pooled cells of every class channel (``heads.LocalHead``).
    """
    return EmbeddingQueue(entries_per_window * LOCAL_WINDOWS, num_classes * 64)
