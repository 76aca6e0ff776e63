"""Training on several processes (GPUs or CPU sockets, one machine or several) with ``torchrun``.

``napari-action train`` needs no option for this: started by ``torchrun``, which
sets ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``
for every process, the trainer joins the process group by itself::

    torchrun --standalone --nproc-per-node 4 -m napari_action.cli.main train --image ... --out model.pt

What each process (rank) does, and why:

* The student is wrapped in :class:`~torch.nn.parallel.DistributedDataParallel`
  (NCCL on CUDA, Gloo on the CPU): gradients are averaged across ranks during
  backward, so every rank takes the same optimiser step and the student stays
  identical everywhere. Its BatchNorm running statistics are averaged after
  every step (:func:`average_buffers`), so the whole state dict is identical.
* The EMA teacher follows that identical student, so it is identical on all
  ranks without being communicated.
* Each rank draws its own crops: its random generators start from
  ``seed + rank``. Rank 0 draws exactly what a single-process run draws; the
  initial weights come from ``seed`` on every rank and are broadcast from rank
  0 anyway (a checkpoint given to ``--init`` on one machine only stays safe).
* The distillation queues receive the teacher embeddings of all ranks
  (:func:`gather_rows`, in rank order), as in MoCo's multi-GPU training: every
  queue is the same on every rank, and with N ranks it holds the most recent
  ``queue_size`` embeddings of N times the crops.
* The losses shown are averaged over ranks, and a non-finite loss on any rank
  stops every rank at the same step (the decision comes from one all-reduce),
  so no rank waits forever in a collective the others left.
* Streaming predictions, the fit gate, the progress bar and the checkpoint
  are rank 0's alone; they involve no collective, so the other ranks simply
  skip them.

Not supported under ``torchrun``: halving the batches after a GPU ran out of
memory (the ranks would disagree about batch sizes, and DistributedDataParallel
cannot resume a step whose backward never ran), so an out-of-memory error
ends that rank; ``torchrun`` then stops the others. Launched some other way
than by ``torchrun``, the others would wait in their next collective until the
process group's timeout (30 minutes by default) — prefer ``torchrun``, which
also works inside SLURM (``srun torchrun --nnodes $SLURM_NNODES ...``).

Debugging: with ``NAPARI_ACTION_RANK_STATE_DIR`` set to a folder, every rank
of ``napari-action train`` writes its final student, teacher and queues there
as ``rank<k>.pt`` (:func:`dump_rank_state`); the tests compare them across ranks.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from napari_action.networks.teacher import StudentPass
from napari_action.runtime import seed_everything

#: Folder where every rank writes its final state (debugging and tests; unset: nothing written).
RANK_STATE_ENV = "NAPARI_ACTION_RANK_STATE_DIR"


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands among the processes of one training run.

    Attributes
    ----------
    rank : int
        Global rank, 0 to ``world_size - 1`` (unique across machines).
    world_size : int
        Number of processes training together; 1 without ``torchrun``.
    local_rank : int
        Rank on this machine: the index of the GPU this process uses.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_distributed(self) -> bool:
        """True when more than one process trains."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on the process that prints, streams and writes files (rank 0)."""
        return self.rank == 0


SINGLE_PROCESS = DistributedContext()


def launched_by_torchrun(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process is one of several started by ``torchrun`` (``WORLD_SIZE`` > 1).

    A one-process ``torchrun`` counts as a plain run: nothing to synchronise.
    """
    environ = os.environ if environ is None else environ
    return int(environ.get("WORLD_SIZE", "1")) > 1


def context_from_environment(environ: Mapping[str, str] | None = None) -> DistributedContext:
    """The rank, world size and local rank that ``torchrun`` set; :data:`SINGLE_PROCESS` without it."""
    environ = os.environ if environ is None else environ
    if not launched_by_torchrun(environ):
        return SINGLE_PROCESS
    return DistributedContext(
        rank=int(environ["RANK"]),
        world_size=int(environ["WORLD_SIZE"]),
        local_rank=int(environ.get("LOCAL_RANK", "0")),
    )


def device_for_rank(device: torch.device, context: DistributedContext) -> torch.device:
    """``cuda`` becomes ``cuda:LOCAL_RANK`` (one GPU per process); other devices are kept.

    An explicit index (``cuda:1``) is the user's choice and kept; to hand
    processes other GPUs, set ``CUDA_VISIBLE_DEVICES``.
    """
    if context.is_distributed and device.type == "cuda" and device.index is None:
        return torch.device("cuda", context.local_rank)
    return device


def rank_generators(
    seed: int, context: DistributedContext, device: torch.device
) -> tuple[np.random.Generator, torch.Generator]:
    """This rank's generators of crops and augmentation, from ``seed + rank``; under torchrun the global
    torch generator (dropout) is re-seeded from it too.

    Rank 0 (and a single process) draws what it always drew; the other ranks draw other crops. The
    global generator is re-seeded only under torchrun, after the weights were initialised from ``seed``
    alike on all ranks, so a single process keeps its numbers.
    """
    seed = seed + context.rank
    if context.is_distributed:
        seed_everything(seed)
    return np.random.default_rng(seed), torch.Generator(device=device).manual_seed(seed)


def backend_for(device: torch.device) -> str:
    """NCCL between GPUs (the fast path), Gloo for everything else (CPU) and where torch has no NCCL.

    torch ships NCCL for Linux only: on Windows several GPUs train through Gloo (slower, but they train).
    """
    return "nccl" if device.type == "cuda" and torch.distributed.is_nccl_available() else "gloo"


def join(context: DistributedContext, device: torch.device) -> None:
    """Join the process group of ``torchrun`` (once per process); nothing in a single process.

    Parameters
    ----------
    context : DistributedContext
        From :func:`context_from_environment`.
    device : torch.device
        This rank's device (:func:`device_for_rank`): it picks the backend.
    """
    if not context.is_distributed or dist.is_initialized():
        return
    if device.type == "cuda":
        # NCCL uses the current device for its communicator.
        torch.cuda.set_device(device)
    # The address, port, rank and world size come from torchrun's environment variables.
    dist.init_process_group(backend=backend_for(device), init_method="env://")


def leave() -> None:
    """Destroy the process group, if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(context: DistributedContext) -> None:
    """Wait until every rank got here (nothing in a single process)."""
    if context.is_distributed:
        dist.barrier()


def wrap_student(module: nn.Module, device: torch.device) -> DistributedDataParallel:
    """``module`` in :class:`DistributedDataParallel`, set up for ACTION's stages.

    ``find_unused_parameters``: each stage trains another part of the network
    (stage i only the encoder and global head, stage ii no representation
    head, stage iii no distillation heads), so which parameters receive a
    gradient changes from stage to stage; DDP finds them from the outputs of
    :class:`~napari_action.networks.teacher.StudentPass`, which returns only
    what the loss uses. The graph walk costs far less than a step.

    Buffers (BatchNorm running statistics) are not broadcast from rank 0 at
    every forward: that would throw away the statistics of the other ranks'
    crops. :func:`average_buffers` averages them after each step instead.
    """
    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(
        module, device_ids=device_ids, find_unused_parameters=True, **_no_buffer_broadcast_in_forward()
    )


class StudentPassCache:
    """The student's one call per step, built again only when the student was replaced (new classes).

    Under torchrun it is wrapped in :class:`DistributedDataParallel` once per
    student: wrapping is a collective that registers gradient hooks on the
    parameters, and a wrapper per stage would rely on the earlier one being
    freed to drop its hooks.
    """

    def __init__(self, context: DistributedContext, device: torch.device):
        self._context = context
        self._device = device
        self._student: nn.Module | None = None
        self._pass: nn.Module | None = None

    def student_pass(self, student: nn.Module) -> nn.Module:
        """The (wrapped) :class:`~napari_action.networks.teacher.StudentPass` of ``student``."""
        if self._pass is None or self._student is not student:
            self._student = student
            self._pass = StudentPass(student)
            if self._context.is_distributed:
                self._pass = wrap_student(self._pass, self._device)
        return self._pass


def _no_buffer_broadcast_in_forward() -> dict[str, bool]:
    # torch 2.13 renamed the option (and warns about the old name); torch >= 2.5 is supported.
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters:
        return {"forward_sync_buffers": False}
    return {"broadcast_buffers": False}


def broadcast_module(module: nn.Module, context: DistributedContext) -> None:
    """Copy rank 0's parameters and buffers into ``module`` on every rank (in place)."""
    if not context.is_distributed:
        return
    with torch.no_grad():
        for tensor in module.state_dict().values():
            # Channels-last weights are not contiguous in the default sense, which Gloo requires.
            message = tensor.contiguous()
            dist.broadcast(message, src=0)
            if message is not tensor:
                tensor.copy_(message)


def average_buffers(module: nn.Module, context: DistributedContext) -> None:
    """Average ``module``'s floating-point buffers across ranks, in place, with one all-reduce.

    The mean of the ranks' BatchNorm running means is the running mean of
    the whole (all-rank) batch; the mean of their running variances leaves
    out the spread between the ranks' batch means, small for crops of the
    same volumes. Integer buffers (batches seen) are equal on all ranks already.
    """
    if not context.is_distributed:
        return
    buffers = [b for b in module.buffers() if b.is_floating_point()]
    if not buffers:
        return
    with torch.no_grad():
        flat = torch.cat([b.reshape(-1) for b in buffers])
        dist.all_reduce(flat)
        flat /= context.world_size
        for buffer, averaged in zip(buffers, flat.split([b.numel() for b in buffers]), strict=True):
            buffer.copy_(averaged.view_as(buffer))


def average_values(values: dict[str, float], context: DistributedContext, device: torch.device) -> dict[str, float]:
    """The mean over ranks of each value (same keys, same order on every rank).

    A NaN or infinity on any rank makes the mean non-finite on all of them,
    which is how every rank learns, from this one all-reduce, that a loss
    diverged somewhere.
    """
    if not context.is_distributed:
        return values
    # float64 so that averaging does not round the logged losses.
    summed = torch.tensor(list(values.values()), dtype=torch.float64, device=device)
    dist.all_reduce(summed)
    means = (summed / context.world_size).tolist()
    return dict(zip(values.keys(), means, strict=True))


def gather_rows(rows: torch.Tensor, context: DistributedContext) -> torch.Tensor:
    """``rows`` of every rank, concatenated along the first axis in rank order.

    Every rank must pass a tensor of the same shape (each draws the same batch
    sizes). Used for the teacher embeddings that enter the memory queues.
    """
    if not context.is_distributed:
        return rows
    rows = rows.detach().contiguous()
    parts = [torch.empty_like(rows) for _ in range(context.world_size)]
    dist.all_gather(parts, rows)
    return torch.cat(parts)


def dump_rank_state(
    modules: Mapping[str, nn.Module], context: DistributedContext, environ: Mapping[str, str] | None = None
) -> Path | None:
    """Write the state dicts of ``modules`` to ``$NAPARI_ACTION_RANK_STATE_DIR/rank<k>.pt`` when that is set.

    A debugging aid: comparing the files of all ranks shows whether they
    really trained one model (and filled the same queues).

    Parameters
    ----------
    modules : mapping of str to nn.Module
        Written as one dict, each key prefixed with its module's name and a dot.
    context : DistributedContext
        Names the file.
    environ : mapping, optional
        Where to look for the variable (default ``os.environ``).

    Returns
    -------
    pathlib.Path or None
        The file written, or None when the variable is not set.
    """
    environ = os.environ if environ is None else environ
    folder = environ.get(RANK_STATE_ENV)
    if not folder:
        return None
    Path(folder).mkdir(parents=True, exist_ok=True)
    state = {
        f"{prefix}.{name}": value.detach().cpu()
        for prefix, module in modules.items()
        for name, value in module.state_dict().items()
    }
    path = Path(folder) / f"rank{context.rank}.pt"
    torch.save(state, path)
    return path
