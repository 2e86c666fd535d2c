"""How many (image x class x K) rows one forward call of a score network takes, and keeping
the memory those calls free.

Why: the classifier's cost on a CPU was half memory churn. Each forward call of the 64-px,
width-16 UNet on 256 rows allocates activation maps of 17-50 MB each; glibc serves blocks
that large with ``mmap`` and returns them to the kernel on ``free``, so every call faulted in
(and the kernel zeroed) hundreds of MB again: system time equalled user time. Two remedies,
neither of which changes a number the network computes:

* :func:`forward_rows`: the rows of one call come from a memory budget (``SGC_CLASSIFY_MEMORY_MB``)
  instead of a fixed count, so a bigger image or network gets fewer rows, not more memory;
* :func:`retain_freed_memory`: the process's allocator keeps freed blocks for the next call.

The budget counts 20 full-resolution feature maps (4 bytes x width x H x W) per row: a UNet
call holds its activations at every level at once, and the rule errs towards fewer rows.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading

#: The default budget of one forward call, in MiB (the setting ``classify_memory_mb``).
DEFAULT_MEMORY_MB = 512
#: Peak bytes of a forward call per row, in full-resolution feature maps (measured, see above).
ACTIVATION_FACTOR = 20

_M_TRIM_THRESHOLD = -1  # glibc malloc.h: keep this much free memory at the heap's top
_M_MMAP_THRESHOLD = -3  # glibc malloc.h: blocks at least this big are mmap'd (and unmapped)
_RETAIN_BYTES = 1 << 30
_retained: bool | None = None
_lock = threading.Lock()


def forward_rows(width: int, image_size: int, memory_mb: float, cap: int | None = None) -> int:
    """Rows per forward call that fit ``memory_mb`` (at least 1, at most ``cap``)."""
    if memory_mb <= 0:
        raise ValueError(f"the classifier's memory budget must be positive, got {memory_mb} MB")
    per_row = ACTIVATION_FACTOR * 4 * max(1, width) * image_size**2
    rows = max(1, int(memory_mb * 2**20) // per_row)
    return min(rows, cap) if cap else rows


def retain_freed_memory() -> bool:
    """Ask glibc to keep freed blocks up to 1 GiB instead of unmapping them (once per process).

    The process then holds its peak (the budget above) between calls, which a worker that
    classifies all day would reach anyway. False where the C library is not glibc.
    """
    global _retained
    with _lock:
        if _retained is None:
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c"))
                mallopt = libc.mallopt
            except (OSError, AttributeError):
                _retained = False
            else:
                mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
                ok_mmap = mallopt(_M_MMAP_THRESHOLD, _RETAIN_BYTES) == 1
                ok_trim = mallopt(_M_TRIM_THRESHOLD, _RETAIN_BYTES) == 1
                _retained = ok_mmap and ok_trim
        return _retained


def model_width(model) -> int:  # noqa: ANN001 (any torch module)
    """Channels of the network's first convolution: its full-resolution feature maps' width."""
    from torch import nn

    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return int(module.out_channels)
    return 1
