"""Keep freed memory in the process, so evaluations stop paying page faults.

PyTorch's CPU tensors come from the C library's malloc. glibc serves every block of 32 MiB or
more (less, early on) with its own mmap() and hands it back to the kernel at free(), so each
evaluation at 512 px maps the large activations anew and the kernel zeroes them page by page
as they are first written: about 23,000 page faults per bf16 evaluation, 118,000 in fp32
(`python benchmarks/throughput.py --sizes 512 --malloc default`, column page_faults_per_eval).
Telling malloc never to mmap and never to trim its heap makes those blocks reused from one
evaluation to the next (README, Performance, has the measurement). The process keeps its peak
memory until it exits, which the engine reaches at every evaluation anyway.

Threads other than the main one get arenas of their own from glibc, heaps of at most 64 MiB
that are mapped and trimmed regardless of those settings: an evaluation run from a thread
faulted up to 27,000 pages again (a 512 px bf16 one, in a scratch count), as a 64 MiB block
freed and allocated again in a thread did 8,192 times per round (tested). So every thread shares
the main arena.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

M_TRIM_THRESHOLD = -1  # glibc's mallopt() parameters (malloc.h)
M_MMAP_MAX = -4
M_ARENA_MAX = -8


@functools.cache  # once per process
def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed blocks for reuse; True if it took the settings.

    Elsewhere (macOS, Windows, musl) nothing changes and the result is False.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success; musl has no mallopt, other libcs may refuse the parameters
    settings = ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, 2**31 - 1), (M_ARENA_MAX, 1))
    return all([mallopt(parameter, value) == 1 for parameter, value in settings])
