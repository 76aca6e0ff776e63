"""Device choice, mixed precision, seeding and the CPU thread cap, shared by training and prediction."""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch

from napari_action.cpu_allotment import allotted_cores


def resolve_device(name: str = "auto") -> torch.device:
    """Return the torch device for ``name`` (``auto``: CUDA, then Apple MPS, then CPU).

    Raises
    ------
    ValueError
        If ``name`` is not a device napari-action can use, or an explicitly requested accelerator is not
        available, with a hint.
    """
    name = str(name).strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:  # torch's own message lists twenty device types napari-action cannot use
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {name!r} is not one napari-action can use: choose auto, cpu, cuda, cuda:N or mps.")
    if device.type == "cuda" and not torch.cuda.is_available():
        # Worded for the command line (--device) and the widget's menu alike, and saying which of the two
        # usual causes it is: a torch built without CUDA, or no GPU (driver) on this machine.
        build = "a build without CUDA" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        raise ValueError(
            f"the device {name!r} was asked for, but PyTorch sees no CUDA GPU here (torch {torch.__version__}, "
            f"{build}). Choose the device auto or cpu, or install a CUDA build of torch on a machine with a GPU."
        )
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise ValueError(
            f"device={name!r} does not exist: PyTorch sees {count} CUDA GPU(s), cuda:0 to cuda:{count - 1} "
            "(CUDA_VISIBLE_DEVICES may hide others). Choose one of them, or 'cuda'."
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("the device 'mps' was asked for, but Apple MPS is not available here: choose auto or cpu.")
    return device


def available_devices() -> list[str]:
    """Device names worth offering: ``auto`` and ``cpu``, plus ``cuda`` / ``mps`` where torch sees them."""
    devices = ["auto", "cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices


def device_label(device: torch.device, amp: bool = False) -> str:
    """Human-readable description, e.g. ``"CUDA: NVIDIA H100"`` or ``"CPU, 2 threads, bfloat16"``."""
    if device.type == "cuda":
        label = f"CUDA: {torch.cuda.get_device_name(device)}"
    elif device.type == "mps":
        return "Apple MPS"
    else:
        threads = torch.get_num_threads()
        label = f"CPU, {threads} thread{'' if threads == 1 else 's'}"
    return f"{label}, {str(amp_dtype(device)).removeprefix('torch.')}" if amp else label


def cpu_has_native_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX512-BF16 or AMX); elsewhere it is emulated, and slower."""
    # torch only exposes these probes privately; an older or newer torch without them reads as "no".
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def resolve_amp(device: torch.device, amp: bool, cpu_bfloat16: bool | None = None) -> bool:
    """Whether mixed precision runs on ``device``: ``amp`` on CUDA, ``cpu_bfloat16`` on a CPU.

    Two settings, because ``amp`` has always meant "on CUDA" (models saved with it on were trained
    in float32 on a CPU), and bfloat16 on a CPU is a choice of its own. ``cpu_bfloat16 = None``
    chooses it where the CPU computes it natively: there a training step is about 1.5x faster at
    the same Dice (docs/benchmarks.md, "bfloat16 where the CPU has it"); emulated elsewhere.
    """
    if device.type == "cuda":
        return bool(amp)
    if device.type != "cpu":
        return False
    return cpu_has_native_bfloat16() if cpu_bfloat16 is None else bool(cpu_bfloat16)


def amp_dtype(device: torch.device) -> torch.dtype:
    """The autocast type: bfloat16, except float16 on a GPU without bfloat16."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """Mixed precision: bfloat16 on a CPU, on CUDA bfloat16 where supported (no loss scaler needed), else float16."""
    if not enabled or device.type not in ("cuda", "cpu"):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=amp_dtype(device))


def autocast_paused(tensor: torch.Tensor) -> contextlib.AbstractContextManager:
    """Autocast off on ``tensor``'s device: what runs inside computes in the dtype it is given.

    For the losses and the small heads: sums over thousands of pixels and similarities divided by
    temperatures down to 0.01 need more than bfloat16's 8-bit mantissa.
    """
    if tensor.device.type not in ("cuda", "cpu"):
        return contextlib.nullcontext()
    return torch.autocast(tensor.device.type, enabled=False)


def needs_grad_scaler(device: torch.device, enabled: bool) -> bool:
    """float16 autocast (pre-Ampere GPUs) needs a gradient scaler; bfloat16 does not."""
    return enabled and device.type == "cuda" and not torch.cuda.is_bf16_supported()


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch so that CPU runs repeat exactly."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def configure_threads(num_threads: int | None, default: int | None = None) -> None:
    """Cap torch's CPU threads for work started from the calling thread.

    With torch's OpenMP backend the cap is per calling thread (an OpenMP
    setting), so whoever trains or predicts in a worker thread sets it there.

    Parameters
    ----------
    num_threads : int or None
        The cap; None or 0: ``default``. A cap below 1 leaves torch as it is.
    default : int or None
        The cap when ``num_threads`` is unset; None: torch's own choice, held to the cores a container or a
        batch scheduler allots (:func:`~napari_action.cpu_allotment.allotted_cores`; the command line's
        default). The widget passes every allotted core; its worker thread runs at a lower priority,
        which keeps the GUI responsive.
    """
    threads = num_threads or default
    if threads is None:
        # torch counts the cores it may run on, not the quota: 64 threads on 4 cores' worth of quota.
        allotted = allotted_cores()
        threads = allotted if allotted < torch.get_num_threads() else None
    if threads is not None and threads > 0:
        torch.set_num_threads(threads)


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is an accelerator running out of memory (CUDA, or Apple's MPS)."""
    if isinstance(error, torch.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "MPS backend out of memory" in str(error)


def release_cached_memory(device: torch.device) -> None:
    """Hand the allocator's cached blocks back after an out-of-memory error, so a smaller try can fit."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()
